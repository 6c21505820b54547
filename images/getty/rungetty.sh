#!/bin/sh
# Start a shell (INSECURE=true) or a login prompt on each console the kernel writes to, and
# start it again when it ends.
infinite_loop() {
	while true; do "$@"; sleep 1; done
}
consoles=""
for opt in $(cat /proc/cmdline); do
	case "$opt" in
	console=*)
		c=${opt#console=}
		consoles="$consoles ${c%%,*}"
		;;
	esac
done
[ -z "$consoles" ] && consoles="console"
for c in $consoles; do
	[ -c "/dev/$c" ] || continue
	if [ "$INSECURE" = "true" ]; then
		infinite_loop setsid -c /bin/sh -l <"/dev/$c" >"/dev/$c" 2>&1 &
	else
		infinite_loop /sbin/getty -L 115200 "$c" vt100 &
	fi
done
wait
