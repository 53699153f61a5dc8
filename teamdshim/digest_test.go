package teamdshim

import "testing"

func TestConfigDigest(t *testing.T) {
	base := `{"device":"PortChannel1","hwaddr":"02:00:00:00:00:01","runner":{"active":true,"name":"lacp","fast_rate":true}}`
	tests := []struct {
		name, config string
		same         bool
	}{
		{"identical", base, true},
		{"key order and spaces", `{ "runner": {"fast_rate": true, "name": "lacp", "active": true},
			"hwaddr": "02:00:00:00:00:01", "device": "PortChannel1" }`, true},
		{"slow rate", `{"device":"PortChannel1","hwaddr":"02:00:00:00:00:01","runner":{"active":true,"name":"lacp","fast_rate":false}}`, false},
		{"other MAC", `{"device":"PortChannel1","hwaddr":"02:00:00:00:00:02","runner":{"active":true,"name":"lacp","fast_rate":true}}`, false},
	}
	want, err := ConfigDigest([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ConfigDigest([]byte(tt.config))
			if err != nil {
				t.Fatal(err)
			}
			if (got == want) != tt.same {
				t.Errorf("digest %s vs %s: same = %v, want %v", got, want, got == want, tt.same)
			}
		})
	}
	for _, bad := range []string{"", "{", `{"a":1} {"b":2}`, "nul"} {
		if _, err := ConfigDigest([]byte(bad)); err == nil {
			t.Errorf("ConfigDigest(%q): no error", bad)
		}
	}
}
