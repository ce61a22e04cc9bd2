#!/usr/bin/env bash
# Prepare the tools the pxe-publisher end-to-end test boots with, without
# installing anything system-wide:
#   * QEMU (x86_64 system emulator), SeaBIOS and Debian's iPXE option ROMs,
#   * a Debian kernel and its modules (the "installer" kernel).
# Every package is fetched with `apt-get download` and unpacked with `dpkg -x`
# into a private cache folder. Installing bookworm's qemu-system-x86 would
# remove the newer qemu-utils some machines ship, so we never install it.
#
# Idempotent: a second run with a complete cache does nothing but print the
# environment file. Usage:
#   prepare-tools.sh            # prepares and prints the path of tools.env
# The cache lives in $SLIPWAY_E2E_CACHE, else $XDG_CACHE_HOME/slipway-pxe-e2e,
# else $HOME/.cache/slipway-pxe-e2e. tools.env holds shell assignments:
#   QEMU, QEMU_LD_LIBRARY_PATH, QEMU_DATA_DIRS (colon-separated -L dirs),
#   IPXE_ROM, KERNEL, MODULES_DIR.
set -euo pipefail

cache="${SLIPWAY_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slipway-pxe-e2e}"
root="$cache/root"
debs="$cache/debs"
envfile="$cache/tools.env"
stamp="$cache/.complete-v1"

die() { echo "prepare-tools.sh: $*" >&2; exit 1; }

if [[ -f "$stamp" && -f "$envfile" ]]; then
  echo "$envfile"
  exit 0
fi

command -v apt-get >/dev/null || die "apt-get is required to fetch QEMU/iPXE/kernel packages"
command -v dpkg >/dev/null || die "dpkg is required to unpack packages"

mkdir -p "$debs" "$root"

# The concrete kernel package behind the linux-image-amd64 meta package.
kernel_pkg="$(apt-cache depends linux-image-amd64 2>/dev/null \
  | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
if [[ -z "$kernel_pkg" ]]; then
  apt-get update >/dev/null 2>&1 || true
  kernel_pkg="$(apt-cache depends linux-image-amd64 2>/dev/null \
    | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
fi
[[ -n "$kernel_pkg" ]] || die "cannot resolve linux-image-amd64 to a kernel package (run apt-get update?)"

# QEMU plus the libraries it links that a stock machine may lack. Libraries
# already on the host are found through the normal loader path.
pkgs=(
  qemu-system-x86 qemu-system-data qemu-system-common seabios ipxe-qemu
  libcapstone4 libdaxctl1 libfdt1 libibverbs1 libndctl6 libnl-3-200
  libnl-route-3-200 libpmem1 librdmacm1 libslirp0 libvdeplug2
  libpixman-1-0 libnuma1 libaio1 liburing2 libfuse3-3 libbpf1 libseccomp2
  "$kernel_pkg"
)

(
  cd "$debs"
  for p in "${pkgs[@]}"; do
    if ! compgen -G "${p}_*.deb" >/dev/null; then
      apt-get download "$p" >/dev/null 2>"$cache/apt-$p.log" \
        || { apt-get update >/dev/null 2>&1 || true; apt-get download "$p" >/dev/null 2>"$cache/apt-$p.log"; } \
        || die "apt-get download $p failed: $(tail -n 3 "$cache/apt-$p.log")"
    fi
  done
  for f in *.deb; do
    dpkg -x "$f" "$root"
  done
)

qemu="$root/usr/bin/qemu-system-x86_64"
[[ -x "$qemu" ]] || die "qemu-system-x86_64 missing after unpacking"
libpath="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu"
missing="$(LD_LIBRARY_PATH="$libpath" ldd "$qemu" | grep 'not found' || true)"
[[ -z "$missing" ]] || die "QEMU still lacks libraries: $missing"
LD_LIBRARY_PATH="$libpath" "$qemu" --version >/dev/null || die "unpacked QEMU does not run"

rom="$root/usr/lib/ipxe/qemu/pxe-virtio.rom"
[[ -f "$rom" ]] || die "iPXE ROM $rom missing"
[[ -f "$root/usr/share/seabios/bios-256k.bin" ]] || die "SeaBIOS image missing"

kernel="$(ls "$root"/boot/vmlinuz-* 2>/dev/null | head -n1 || true)"
[[ -n "$kernel" ]] || die "kernel image missing after unpacking $kernel_pkg"
kver="${kernel##*/vmlinuz-}"
modules="$(ls -d "$root"/lib/modules/"$kver" "$root"/usr/lib/modules/"$kver" 2>/dev/null | head -n1 || true)"
[[ -n "$modules" && -d "$modules" ]] || die "modules for $kver missing"

cat >"$envfile" <<ENV
QEMU=$qemu
QEMU_LD_LIBRARY_PATH=$libpath
QEMU_DATA_DIRS=$root/usr/share/qemu:$root/usr/share/seabios:$root/usr/lib/ipxe/qemu
IPXE_ROM=$rom
KERNEL=$kernel
MODULES_DIR=$modules
ENV
touch "$stamp"
echo "$envfile"
