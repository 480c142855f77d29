# Packer tunables for the test builder (./build local --vars overlays/test-local/test-local.pkrvars.hcl):
# it reaches its root shell in about 10 s (x86_64) / 12 s (aarch64: UEFI firmware first) under TCG; typed
# keys are buffered once its kernel's keyboard driver is up.
boot_wait = {
  x86_64  = "25s"
  aarch64 = "30s"
}
cmd_wait    = "3s"
ssh_timeout = "3m"
memory      = 1024
