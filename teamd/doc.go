// Package teamd is teamd's own interfaces, as libteam and SONiC define
// them: its control socket, its command line, its warm-reboot dump files
// and the way SONiC names its ports. The shim, the supervisor and the test
// bed's teamd stand-in all speak to teamd (or as teamd) through this one
// package, so that they share one reading of each interface.
//
// # Control socket
//
// teamdctl's protocol (libteam teamd/teamd_usock.c, libteamdctl/cli_usock.c):
// AF_UNIX SOCK_SEQPACKET at /var/run/teamd/<team>.sock, one message per
// record.
//
//	request: "REQUEST\n<Method>\n<arg>\n..."  (in args "\n" is sent as `\n`, `\` as `\\`)
//	success: "REPLY_SUCCESS\n<payload>"
//	error:   "REPLY_ERROR\n<code>\n<message>\n"
//
// teamd answers an unknown method or a malformed request with silence, so
// every [Client] call is bounded by its context. The server half
// ([ParseRequest], [Success], [Failure]) is what the stand-in uses.
// [State] is the StateDump JSON of the lacp runner.
//
// # Command line
//
// [ParseArgs] reads teamd's getopt command line ("hdkevf:c:p:groNt:nDZ:Uul:L:wP"),
// and [Args] rewrites it: the shim runs teamd with the options SONiC's
// teammgrd gave, minus -d and with or without -w.
//
// # Dump files
//
// SONiC's teamd writes, on its warm stop (SIGUSR1), one file per member
// port in its -L directory, holding the last LACPDU received from the
// partner ([ParsePortDump]), and one per LAG with its carrier and port list
// ([ParseLAGDump]).
//
// # Interface names
//
// [CompareNames] orders port and LAG names as a switch lists them:
// Ethernet8 before Ethernet12, PortChannel2 before PortChannel10.
package teamd
