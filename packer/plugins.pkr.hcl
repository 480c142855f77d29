# Plugins for Packer >= 1.7, installed by the build step with `packer init` into work/packer_plugin.
# Packer 1.6.6 has the qemu builder built in and rejects this block, so the build step leaves this
# file out for it (see src/local/packer.ts).
packer {
  required_version = ">= 1.6.6"
  required_plugins {
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = ">= 1.1.0"
    }
  }
}
