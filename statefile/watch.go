package statefile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
	"github.com/teamdwarm/teamdwarm/proto"
	"golang.org/x/sys/unix"
)

// Event reports one record file of a watched directory.
type Event struct {
	Name    string       // file name, e.g. "PortChannel1.snapshot"
	Path    string       // full path
	LAG     string       // from the name; "" for cutover
	Kind    proto.Kind   // from the name
	Record  proto.Record // the complete record; nil if Removed or Err != nil
	Removed bool         // the file was removed or renamed away
	// Version is the version of the file the record (or Err) is of; zero
	// if Removed. A reader that keeps it need not read that version again.
	Version Version
	// Err says why a file that is there could not be used (corrupt,
	// unsafe, ...). With Name == "" it is an error of the watch itself.
	Err error
}

// Version tells apart two versions of a record file: every write of a
// record is a new inode, renamed into place.
type Version struct {
	Ino, Mtime, Size int64
}

// VersionOf is the version of the file at path; a symlink's own, not its
// target's.
func VersionOf(path string) (Version, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return Version{}, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	return Version{Ino: int64(st.Ino), Mtime: st.Mtim.Nano(), Size: st.Size}, nil
}

// Watch watches the record directory dir until ctx is done, then closes the
// returned channel. It first reports the records already there, then each
// record renamed into place, rewritten or removed. Temp files and names that
// are not record names are ignored. A version of a file is reported once,
// also across the rescan that follows an inotify queue overflow.
//
// The watch is on the directory, never on a file: the writer replaces files
// by rename, which a watch on the file would not follow.
func Watch(ctx context.Context, dir string) (<-chan Event, error) {
	return WatchOnly(ctx, dir, nil)
}

// WatchOnly is Watch for the records keep accepts (by LAG, "" for the
// cutover, and kind); others are not even read. With many LAGs in one
// directory, a shim that reads only its own records saves the others'
// reads at the very moment all of them are handed over.
func WatchOnly(ctx context.Context, dir string, keep func(lag string, k proto.Kind) bool) (<-chan Event, error) {
	notices, err := inotify(ctx, dir)
	if err != nil {
		return nil, err
	}
	return scan(ctx, dir, keep, notices), nil
}

// notice is what a watch learns from: a name in the directory that may
// have changed, or that events were lost (rescan), or an error.
type notice struct {
	name   string
	rescan bool
	err    error
}

// inotify turns an inotify watch of dir into notices until ctx is done.
func inotify(ctx context.Context, dir string) (<-chan notice, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	out := make(chan notice, 16)
	go func() {
		defer close(out)
		defer w.Close()
		for {
			var n notice
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				n.name = filepath.Base(ev.Name)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				if errors.Is(err, fsnotify.ErrEventOverflow) {
					n.rescan = true
				} else {
					n.err = fmt.Errorf("watch %s: %w", dir, err)
				}
			}
			select {
			case out <- n:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// scan reports the records of dir: those there now, then those the
// notices name. The notices must be flowing before scan is called: a
// record that lands in between is seen twice and reported once.
func scan(ctx context.Context, dir string, keep func(lag string, k proto.Kind) bool, notices <-chan notice) <-chan Event {
	ch := make(chan Event, 16)
	go func() {
		defer close(ch)
		s := scanner{dir: dir, seen: map[string]Version{}, out: ch, ctx: ctx, keep: keep}
		if !s.rescan() {
			return
		}
		for {
			var n notice
			select {
			case <-ctx.Done():
				return
			case nn, ok := <-notices:
				if !ok {
					return
				}
				n = nn
			}
			ok := true
			switch {
			case n.err != nil:
				ok = s.send(Event{Err: n.err})
			case n.rescan:
				ok = s.rescan()
			default:
				ok = s.look(n.name)
			}
			if !ok {
				return
			}
		}
	}()
	return ch
}

type scanner struct {
	ctx  context.Context
	dir  string
	seen map[string]Version // owned by the watch goroutine
	out  chan<- Event
	keep func(lag string, k proto.Kind) bool // nil: every record
}

func (s *scanner) send(ev Event) bool {
	select {
	case s.out <- ev:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// rescan looks at every name in the directory and at every name reported
// before (which may be gone now).
func (s *scanner) rescan() bool {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return s.send(Event{Err: fmt.Errorf("watch %s: %w", s.dir, err)})
	}
	names := map[string]bool{}
	for _, de := range des {
		names[de.Name()] = true
	}
	for name := range s.seen {
		names[name] = true
	}
	for name := range names {
		if !s.look(name) {
			return false
		}
	}
	return true
}

// look reports name if it is a record name whose version changed.
func (s *scanner) look(name string) bool {
	if strings.HasPrefix(name, tempPrefix) {
		return true
	}
	lag, kind, ok := proto.ParseFileName(name)
	if !ok || (s.keep != nil && !s.keep(lag, kind)) {
		return true
	}
	path := filepath.Join(s.dir, name)
	ev := Event{Name: name, Path: path, LAG: lag, Kind: kind}
	v, err := VersionOf(path)
	if err != nil {
		if _, known := s.seen[name]; known && errors.Is(err, fs.ErrNotExist) {
			delete(s.seen, name)
			ev.Removed = true
			return s.send(ev)
		}
		return true
	}
	if prev, known := s.seen[name]; known && prev == v {
		return true
	}
	s.seen[name] = v
	ev.Version = v
	ev.Record, ev.Err = ReadFile(path)
	return s.send(ev)
}
