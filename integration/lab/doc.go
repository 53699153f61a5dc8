// Package lab is teamdwarm's real-kernel lab: what needs team.ko, a Linux
// bonding peer and data traffic, none of which the CI host's kernel has.
//
// The host side (RunVM) boots a small qemu VM, with software emulation, on
// Debian's own kernel from Debian's packages (scripts/lab-deps.sh caches it
// unpacked). Its initramfs holds only a static busybox, the modules the lab
// needs and an init script; the VM's root is then the host's own root file
// system, shared read-only over 9p, so that the VM runs the host's teamd
// builds, iproute2 and the project's binaries at their host paths, and a
// few host directories are shared read-write for results. The command the
// VM runs is PID 1 (GuestInit), which reaps, reports the command's exit on
// the console and powers the VM off.
//
// The guest side is the scenarios: real teamd processes (Debian's, SONiC's)
// under teamd-shim driving real team devices over veth pairs into a PEER
// network namespace, where Linux bonding in 802.3ad fast mode is the LACP
// peer, with traffic across every LAG in both directions. Each scenario is
// judged by the peer's own state, sampled every 50 ms, by the LACPDUs it
// received, by the traffic's losses and by the kernel's view of the LAG
// (package teamnl).
package lab
