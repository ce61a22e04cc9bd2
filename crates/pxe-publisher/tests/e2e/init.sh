#!/bin/sh
# /init of the end-to-end test's "installer" initramfs (busybox-static).
# It stands in for the FCOS live installer: bring up the NIC, report the
# kernel command line, fetch the Ignition named by coreos.inst.ignition_url,
# report its sha256, try the same URL again (the token is single-use), then
# power off. Every report line starts with "SLIPWAY-" so the test can parse
# the serial log.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# Keep kernel messages off the serial console: a printk landing mid-line would split a
# report line (seen once: the TSC calibration message appended to SLIPWAY-CMDLINE).
dmesg -n 1 2>/dev/null

# Load the virtio NIC driver stack; repeat passes tolerate ordering issues
# and modules that are built into the kernel.
for pass in 1 2 3; do
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
    grep -q "^$m " /proc/modules 2>/dev/null && continue
    [ -f "/lib/modules/$m.ko" ] && insmod "/lib/modules/$m.ko" 2>/dev/null
  done
done

echo "SLIPWAY-CMDLINE: $(cat /proc/cmdline)"

iface=""
for i in 1 2 3 4 5 6 7 8 9 10; do
  for d in /sys/class/net/*; do
    n="${d##*/}"
    [ "$n" = lo ] && continue
    iface="$n"
  done
  [ -n "$iface" ] && break
  sleep 1
done
if [ -z "$iface" ]; then
  echo "SLIPWAY-ERROR: no network interface"
  poweroff -f
fi
ip link set lo up
ip link set "$iface" up
udhcpc -i "$iface" -s /bin/udhcpc.script -q -n -t 10 >/dev/null 2>&1 || echo "SLIPWAY-ERROR: dhcp failed"

url=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    coreos.inst.ignition_url=*) url="${arg#coreos.inst.ignition_url=}" ;;
  esac
done
if [ -z "$url" ]; then
  echo "SLIPWAY-ERROR: no coreos.inst.ignition_url"
else
  if wget -q -O /tmp/ignition.json "$url" 2>/tmp/wget1.err; then
    echo "SLIPWAY-IGNITION-SHA256: $(sha256sum /tmp/ignition.json | cut -d' ' -f1)"
  else
    echo "SLIPWAY-ERROR: first fetch failed: $(cat /tmp/wget1.err)"
  fi
  if wget -q -O /tmp/again.json "$url" 2>/tmp/wget2.err; then
    echo "SLIPWAY-REFETCH: allowed"
  else
    echo "SLIPWAY-REFETCH: refused: $(cat /tmp/wget2.err)"
  fi
fi
echo "SLIPWAY-DONE"
poweroff -f
