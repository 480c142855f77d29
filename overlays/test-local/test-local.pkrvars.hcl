# Packer tunables for the test builder (./build local --vars overlays/test-local/test-local.pkrvars.hcl):
# it reaches its root shell in about 10 s under TCG (typed keys are buffered once its kernel is up).
boot_wait = {
  x86_64  = "25s"
  aarch64 = "60s"
}
cmd_wait    = "3s"
ssh_timeout = "3m"
memory      = 1024
