# Local image build: one builder VM per variant, driven by the TypeScript `local` step.
#
# The build step writes one variant at a time to a JSON file (var.variant_file) and runs
# `packer build` on a copy of this directory. Everything after the VM is shut down (conversion,
# compression, checksums, upload, import, ...) happens in the TypeScript pipeline, not here.
#
# This file must stay valid for Packer 1.6.6 (Debian 12) as well as current Packer: no `data` blocks,
# no `templatefile()`, no `firmware` argument (UEFI firmware is passed with -bios in qemuargs).
# The `required_plugins` block for current Packer lives in plugins.pkr.hcl, which the build step
# copies in only when the installed Packer understands it.

### Set by the build step

variable "variant_file" {
  type        = string
  description = "JSON file with the resolved settings of the variant to build"
}

### Tunables: override with `./build local --vars FILE` (a Packer .pkrvars.hcl or .pkrvars.json file)

# Unused since the builder boots its kernel directly (nothing is typed, nothing waits a fixed time); still
# declared so that --vars files written for the typed boot command keep loading.
variable "boot_wait" {
  type    = map(string)
  default = {}
}
variable "cmd_wait" {
  type    = string
  default = ""
}
variable "boot_key_interval" {
  type    = string
  default = ""
}

# how long SSH may take to answer: the builder is ready when it does
variable "ssh_timeout" {
  type    = string
  default = "3m"
}

# MiB
variable "memory" {
  type    = number
  default = 1024
}

# 0: chosen by the build step (host cores / --parallel, at most 4)
variable "cpus" {
  type    = number
  default = 0
}

# "": chosen by the build step (KVM only when a probe guest really runs under it, else TCG)
variable "accelerator" {
  type    = string
  default = ""
}

variable "headless" {
  type    = bool
  default = true
}

variable "shutdown_timeout" {
  type    = string
  default = "5m"
}

### Derived

locals {
  v           = jsondecode(file(var.variant_file))
  accelerator = var.accelerator != "" ? var.accelerator : local.v.accelerator
  cpus        = var.cpus > 0 ? var.cpus : local.v.cpus
}

### The builder VM

source "qemu" "alpine" {
  # machine
  qemu_binary     = local.v.qemu_binary
  machine_type    = local.v.machine_type
  qemuargs        = local.v.qemuargs
  accelerator     = local.accelerator
  cpus            = local.cpus
  memory          = var.memory
  headless        = var.headless
  net_device      = "virtio-net"
  disk_interface  = "virtio"
  cdrom_interface = local.v.cdrom_interface

  # Direct kernel boot (kernel, initramfs and command line in qemuargs, taken from the verified ISO by the
  # build step): the initramfs fetches the apkovl from Packer's HTTP server, which brings up networking and
  # sshd with a one-time key. No keys are typed, no fixed wait: the builder is ready when SSH answers.
  # The ISO stays attached as the boot medium the initramfs installs its packages from.
  iso_url              = local.v.iso_path
  iso_checksum         = local.v.iso_checksum
  disable_vnc          = true
  boot_wait            = "0s"
  http_directory       = local.v.http_directory
  http_bind_address    = "127.0.0.1"
  ssh_username         = "root"
  ssh_private_key_file = local.v.ssh_key_file
  ssh_timeout          = var.ssh_timeout
  shutdown_command     = "poweroff"
  shutdown_timeout     = var.shutdown_timeout

  # the blank target disk the setup scripts install onto
  output_directory   = local.v.output_directory
  vm_name            = "image.qcow2"
  format             = "qcow2"
  disk_size          = local.v.disk_size
  disk_discard       = "unmap"
  disk_detect_zeroes = "unmap"
}

build {
  name    = "alpine"
  sources = ["source.qemu.alpine"]

  # data directories the setup scripts use (e.g. setup.d), copied to /tmp/<dir>
  dynamic "provisioner" {
    for_each = length(local.v.script_dirs) > 0 ? [local.v.script_dirs] : []
    iterator = D
    labels   = ["file"]
    content {
      sources     = D.value
      destination = "/tmp/"
    }
  }

  # the setup scripts, in order, with the variant's settings in their environment
  provisioner "shell" {
    scripts          = local.v.scripts
    use_env_var_file = true
    environment_vars = local.v.environment
  }
}
