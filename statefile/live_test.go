package statefile

import (
	"errors"
	"strings"
	"testing"
)

func TestLive(t *testing.T) {
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, alive, err := d.Alive("PortChannel1", 2); err != nil || alive {
		t.Fatalf("before: alive %v, %v", alive, err)
	}
	l, err := d.Live("PortChannel1", 2, "shim pid 7 in teamd")
	if err != nil {
		t.Fatal(err)
	}
	if who, alive, err := d.Alive("PortChannel1", 2); err != nil || !alive || who != "shim pid 7 in teamd" {
		t.Fatalf("held: %q %v %v", who, alive, err)
	}
	if _, alive, _ := d.Alive("PortChannel1", 1); alive {
		t.Fatal("another epoch is alive")
	}
	_, err = d.Live("PortChannel1", 2, "a second shim")
	if !errors.Is(err, ErrLive) || !strings.Contains(err.Error(), "PortChannel1 at epoch 2") || !strings.Contains(err.Error(), "shim pid 7 in teamd") {
		t.Fatalf("second: %v", err)
	}
	// Lock files are not records.
	if es, err := List(d.Path()); err != nil || len(es) != 0 {
		t.Fatalf("List: %v %v", es, err)
	}
	old, err := d.Live("PortChannel10", 1, "old")
	if err != nil {
		t.Fatal(err)
	}
	old.Release(false)
	ls, err := d.Lives()
	if err != nil || len(ls) != 2 {
		t.Fatalf("Lives: %+v %v", ls, err)
	}
	for _, x := range ls {
		if want := x.LAG == "PortChannel1"; x.Held != want {
			t.Errorf("%+v: held %v, want %v", x, x.Held, want)
		}
	}
	l.Release(true)
	if ls, _ := d.Lives(); len(ls) != 1 {
		t.Fatalf("after Release(true): %+v", ls)
	}
	if _, err := d.Live("../x", 1, ""); err == nil {
		t.Fatal("a bad LAG name was accepted")
	}
}

func TestParseLiveName(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lag   string
		epoch uint64
		ok    bool
	}{
		{".PortChannel1.2.live", "PortChannel1", 2, true},
		{".Po.rt.12.live", "Po.rt", 12, true},
		{"PortChannel1.2.live", "", 0, false},
		{".PortChannel1.0.live", "", 0, false},
		{".PortChannel1.x.live", "", 0, false},
		{".2.live", "", 0, false},
		{".teamd-warm.lock", "", 0, false},
		{".PortChannel1.active.tmp-0a", "", 0, false},
	} {
		lag, epoch, ok := parseLiveName(tc.name)
		if lag != tc.lag || epoch != tc.epoch || ok != tc.ok {
			t.Errorf("%s: %q %d %v, want %q %d %v", tc.name, lag, epoch, ok, tc.lag, tc.epoch, tc.ok)
		}
	}
}
