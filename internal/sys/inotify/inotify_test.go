package inotify_test

import (
	"os"
	"testing"

	"github.com/fsnotify/fsnotify"
	"github.com/teamdwarm/teamdwarm/internal/sys/inotify"
)

// An instance this test opens, with one watch, shows in the counts.
func TestReadCountsAnInstance(t *testing.T) {
	before, err := inotify.Read("/proc", os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	if before.MaxInstances <= 0 || before.MaxWatches <= 0 {
		t.Fatalf("limits %+v", before)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	after, err := inotify.Read("/proc", os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	// Other processes of this user may come and go meanwhile; this one's
	// instance and watch are there for sure.
	if after.Instances < 1 || after.Watches < 1 {
		t.Fatalf("after opening one: %+v", after)
	}
	if after.FreeInstances() != after.MaxInstances-after.Instances {
		t.Fatalf("free instances %d of %+v", after.FreeInstances(), after)
	}
}

func TestReadMissingProc(t *testing.T) {
	if _, err := inotify.Read(t.TempDir(), 0); err == nil {
		t.Fatal("no error for a directory that is not /proc")
	}
}
