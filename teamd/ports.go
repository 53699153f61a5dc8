package teamd

import (
	"cmp"
	"maps"
	"slices"
	"strings"
)

// CompareNames orders interface names, ports and LAGs, by their text before
// the trailing number, then by the number: Ethernet8 before Ethernet12 and
// PortChannel2 before PortChannel10, as a switch lists them.
func CompareNames(a, b string) int {
	pa, na := splitNumber(a)
	pb, nb := splitNumber(b)
	if c := strings.Compare(pa, pb); c != 0 {
		return c
	}
	if c := cmp.Compare(len(na), len(nb)); c != 0 && na != "" && nb != "" {
		return c // no leading zeros in port numbers: the longer is larger
	}
	return strings.Compare(na, nb)
}

func splitNumber(s string) (prefix, number string) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	return s[:i], s[i:]
}

// SortNames sorts interface names in place with CompareNames and returns them.
func SortNames(names []string) []string {
	slices.SortFunc(names, CompareNames)
	return names
}

// PortNames lists the ports of a StateDump in CompareNames order.
func (st *State) PortNames() []string {
	return SortNames(slices.Collect(maps.Keys(st.Ports)))
}
