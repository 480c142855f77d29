# Packer tunables for the test builder (./build local --vars overlays/test-local/test-local.pkrvars.hcl):
# it reaches its root shell in about 25 s under TCG on a busy 2-core machine.
boot_wait = {
  x86_64  = "45s"
  aarch64 = "60s"
}
cmd_wait    = "3s"
ssh_timeout = "3m"
memory      = 1024
