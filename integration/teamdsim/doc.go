// Package teamdsim is a stand-in for teamd with the lacp runner, faithful at
// every interface teamdwarm touches: teamd's command line, LACPDUs on the
// member ports (AF_PACKET), the control socket (StateDump and friends, with
// teamd's JSON), SONiC's signals and warm-reboot dump files, and the HLD's
// passive warm standby (-w) that transmits only after the takeover signal.
//
// It exists because the CI kernel has no team driver and no released teamd
// implements the passive standby. It touches no kernel team device; the
// LACP system id comes from the config's "hwaddr".
//
// Signals:
//
//	SIGTERM, SIGINT, SIGQUIT  stock teamd stop: a PDU without Sync/Collecting/Distributing, exit
//	SIGUSR1                   SONiC warm stop: last PDU on selected ports, dump files in -L, exit
//	SIGUSR2                   SONiC fast-reboot stop (unless it is the takeover signal)
//	takeover signal           with -w: fold in -L dump files, transmit at once
package teamdsim
