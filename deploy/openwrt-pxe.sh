#!/bin/sh
# OpenWRT router: serve iPXE over TFTP and point iPXE at Slipway's boot script.
# Run once on the router (uci), with Slipway at 192.168.26.2:8080 and the iPXE binaries
# (ipxe.efi, undionly.kpxe) copied to /srv/tftp on USB storage.
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
