# veth-ns.sh - sourced by the live benches: a network namespace of its own
# ($ns) holding a veth pair $a (sent onto) and $b (captured), IPv6 off (no
# router or neighbour solicitations of the kernel's own), MTU 65535; removed
# at exit. Usage: . benches/veth-ns.sh PREFIX
ns=${1}$$; a=${1}a$$; b=${1}b$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link add "$a" type veth peer name "$b"
for i in "$a" "$b"; do
    ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$i.disable_ipv6=1"
    ip netns exec "$ns" ip link set "$i" mtu 65535 up
done
