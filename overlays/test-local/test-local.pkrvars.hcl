# Packer tunables for the test builder (./build local --vars overlays/test-local/test-local.pkrvars.hcl).
# The builder boots its kernel directly and answers SSH in about 10 s (x86_64) / 15 s (aarch64: UEFI
# firmware first) under TCG; nothing waits a fixed time.
ssh_timeout = "3m"
memory      = 1024
