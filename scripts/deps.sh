#!/usr/bin/env bash
# Installs the system packages mobykit's build, tests and local clusters need on Debian 12, as
# root. Safe to run again: apt-get skips what is already there.
set -euo pipefail
pkgs=(
  qemu-system-x86   # boots images (TCG where there is no KVM)
  qemu-utils        # qemu-img for disk formats
  docker-registry   # a real OCI registry on loopback for integration tests
  busybox-static    # shells and tools baked into system images and test initramfs
  xorriso           # reads back ISO images in tests
  squashfs-tools    # unsquashfs reads back kernel+squashfs images in tests
  isolinux syslinux-common  # a test boots an ISO made with isolinux.bin through `mobykit run qemu`
  e2fsprogs xfsprogs # the disk images' probe is checked against real ext4 and XFS file systems
  ovmf              # UEFI firmware: `run qemu --uefi` and the EFI formats' boot tests
  systemd-boot-efi grub-efi-amd64-bin  # EFI loaders the bootloader image is built from (pkg build)
  qemu-system-arm qemu-efi-aarch64     # arm64 images boot under qemu-system-aarch64 (virt, AAVMF)
  erofs-utils mtools dosfstools        # read back kernel+erofs and EFI system partitions in tests
  etcd-server etcd-client              # real etcd processes for the controller's failover tests
  vde2              # vde_switch: a rootless L2 network between a group's VMs
  cpio zstd         # inspecting initramfs in tests
  openssh-client    # logs in to the sshd image in its boot test
  gcc libc6-dev      # cgo build of the static runc for the runc system image
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross  # the same runc cross-compiled for arm64 (pkg build --platforms)
  iproute2 dpkg-dev ca-certificates git curl
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# arm64 system images take Debian's arm64 packages (pkg build --platforms linux/arm64).
arm64=0
dpkg --print-foreign-architectures | grep -qx arm64 || arm64=1
if ((${#missing[@]} || arm64)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]}); arm64 needs: sudo dpkg --add-architecture arm64 && sudo apt-get update" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ((arm64)); then dpkg --add-architecture arm64; fi
  apt-get update -qq
  if ((${#missing[@]})); then apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; fi
fi
# apt-get download (kernel image recipes, tests) needs fresh package lists.
if [[ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]]; then apt-get update -qq; fi
command -v go >/dev/null || { echo "Go 1.26 is required (https://go.dev/dl/); /usr/local/go/bin must be on PATH" >&2; exit 1; }
