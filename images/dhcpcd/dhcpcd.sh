#!/bin/sh
# dhcpcd-compatible front end for busybox udhcpc. Options of dhcpcd are accepted; -1
# (--oneshot) configures the interfaces once and exits, else udhcpc keeps renewing in the
# foreground. Interfaces named on the command line are used, else every one but lo.
oneshot=false
ifaces=""
while [ $# -gt 0 ]; do
	case "$1" in
	-1|--oneshot) oneshot=true ;;
	-f|--config|-t|--timeout|-e|--env|-h|--hostname) shift ;;
	-*) ;;
	*) ifaces="$ifaces $1" ;;
	esac
	shift
done
if [ -z "$ifaces" ]; then
	for d in /sys/class/net/*; do
		n=${d##*/}
		[ "$n" = lo ] && continue
		[ -e "$d/device" ] || continue
		ifaces="$ifaces $n"
	done
fi
ip link set lo up
status=0
for i in $ifaces; do
	ip link set "$i" up
	if $oneshot; then
		udhcpc -i "$i" -f -q -n -t 10 -T 1 -s /usr/share/udhcpc/default.script || { echo "dhcpcd: no lease on $i"; status=1; }
	else
		udhcpc -i "$i" -f -t 10 -T 1 -s /usr/share/udhcpc/default.script &
	fi
done
if $oneshot; then
	exit $status
fi
wait
