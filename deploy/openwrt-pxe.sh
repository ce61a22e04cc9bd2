#!/bin/sh
# OpenWRT router: serve iPXE over TFTP and point iPXE at Slipway's boot script.
# Run once on the router (uci), with Slipway at 192.168.26.2:8080 and the iPXE binaries
# (ipxe.efi, undionly.kpxe) copied to /srv/tftp on USB storage.
#
# Serving the boot site from the router itself (`slipway publish --to`), instead of Slipway:
#   slipway publish --to sftp://root@192.168.1.1/www/slipway --host-key-file router.pub \
#     --ssh-key ~/.ssh/id_ed25519 --base-url http://192.168.1.1/slipway [--allow-secrets --arm NODE]
# - The router needs an SFTP server (Dropbear has none): opkg install openssh-sftp-server.
# - uhttpd serves /www, as root by default: it can read the 0600 Ignition files that
#   --allow-secrets uploads. The published folder is replaced atomically on each publish.
# - --allow-secrets also uploads the FCOS and K3s artifacts, once, into /www/slipway.artifacts
#   (hundreds of MB: mount USB storage at that path); each site reaches them through its
#   `artifacts` symbolic link to ../slipway.artifacts, so uhttpd must follow symbolic links
#   (its default).
# - Then let iPXE chain to the router instead of Slipway in the last dhcp_boot line below:
#   'tag:ipxe,http://192.168.1.1/slipway/boot.ipxe'.
set -eu
uci set dhcp.@dnsmasq[0].enable_tftp='1'
uci set dhcp.@dnsmasq[0].tftp_root='/srv/tftp'
uci add_list dhcp.@dnsmasq[0].dhcp_match='set:efi-x86_64,option:client-arch,7'
uci add_list dhcp.@dnsmasq[0].dhcp_userclass='set:ipxe,iPXE'
uci add_list dhcp.@dnsmasq[0].dhcp_boot='tag:!ipxe,tag:efi-x86_64,ipxe.efi'
uci add_list dhcp.@dnsmasq[0].dhcp_boot='tag:!ipxe,tag:!efi-x86_64,undionly.kpxe'
uci add_list dhcp.@dnsmasq[0].dhcp_boot='tag:ipxe,http://192.168.26.2:8080/boot.ipxe'
uci commit dhcp
/etc/init.d/dnsmasq restart
