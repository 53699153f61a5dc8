package statefile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"golang.org/x/sys/unix"
)

// ErrUnsafe is matched (errors.Is) when a record file or directory is
// refused for what it is rather than what it holds: a symlink, not a regular
// file, too large, or a directory others can write to.
var ErrUnsafe = errors.New("unsafe record path")

// tempPrefix starts every temp file name; Watch and List skip such names.
const tempPrefix = "."

// WritingDir is where Reserve's files are written and named before they
// are renamed into the record directory dir: in a directory of its own,
// their writes, their naming and the first half of their rename are events
// of a directory nobody watches. In dir itself they woke every watcher of
// the directory (each container's init) three times a record, for a name
// they skip.
func WritingDir(dir string) string { return filepath.Join(dir, tempPrefix+"writing") }

// Dir is a record directory, e.g. /var/warmboot/teamdwarm.
type Dir struct {
	path string

	mu       sync.Mutex
	spares   []int // unnamed files the next writes fill (Reserve)
	noSpares error // why a spare could not be named: Reserve stops trying
}

// OpenDir opens the record directory at path, creating it (mode 0700) and
// its parents if missing. A directory that is not owned by this user or that
// others may write to is refused with an error matching ErrUnsafe.
func OpenDir(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("record directory %s: %w", path, err)
	}
	if err := checkDir(path); err != nil {
		return nil, err
	}
	return &Dir{path: path}, nil
}

func checkDir(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fmt.Errorf("record directory %s: %w", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("record directory %s: not a directory: %w", path, ErrUnsafe)
	case st.Mode&0o002 != 0:
		return fmt.Errorf("record directory %s: mode %#o is world-writable: %w", path, st.Mode&0o7777, ErrUnsafe)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("record directory %s: owned by uid %d, not by uid %d: %w", path, st.Uid, os.Geteuid(), ErrUnsafe)
	}
	return nil
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

// File returns the path of a record file in d.
func (d *Dir) File(lag string, k proto.Kind) string {
	return filepath.Join(d.path, proto.FileName(lag, k))
}

// Write stores rec atomically and durably under its file name
// (proto.FileName) and returns the path. Whenever the writer dies, the final
// name holds either the previous complete record or this one.
func (d *Dir) Write(rec proto.Record) (string, error) { return d.store(rec, true) }

// Publish is Write for a record that matters only while someone waits
// for it: written to a temp file and renamed into place, never fsynced,
// which keeps the disk, and the kernel's writeback in the writer's
// time, out of the handoff. The price: after a host crash the final name
// may hold the previous record, nothing, or a file that fails its checksum
// (readers reject it as corrupt). The outgoing shim's snapshot and a
// standby's .standby are such records: those who wait for them do not
// outlive the host, and the records that decide anything after a reboot
// (.active, the cutover, the journal) are written with Write.
func (d *Dir) Publish(rec proto.Record) (string, error) { return d.store(rec, false) }

// store encodes rec and writes it under its file name: into a reserved
// file if there is one (fillSpare), else through a new one (writeFile).
func (d *Dir) store(rec proto.Record, durable bool) (string, error) {
	path := filepath.Join(d.path, proto.RecordFileName(rec))
	b, err := Encode(rec)
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if fd, ok := d.takeSpare(); ok {
		err := fillSpare(fd, path, b, durable)
		var le *linkError
		switch {
		case err == nil:
			return path, nil
		case !errors.As(err, &le):
			return "", err
		}
		d.mu.Lock()
		d.noSpares = err
		d.mu.Unlock()
	}
	if err := writeFile(path, b, durable); err != nil {
		return "", err
	}
	return path, nil
}

// Reserve makes sure that the next n writes (Write, Publish) find their
// file allocated: an unnamed file (O_TMPFILE) in the writing directory
// (WritingDir, made if missing), which a write fills, names and renames
// into the record directory. Allocating an inode is the dear part of a
// write: ext4 without a journal, for one, scans past every inode freed in
// the last few seconds to find a free one, and a switch's handoffs free
// and allocate one per LAG each. A shim reserves its handoff's files
// while it waits, so that the handoff does not allocate. An unnamed file
// leaves nothing behind if the writer dies. Where the filesystem (or a
// missing /proc) does not allow it, Reserve says why and writes create
// their files as before.
func (d *Dir) Reserve(n int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.noSpares != nil {
		return fmt.Errorf("reserve a record file in %s: %w", d.path, d.noSpares)
	}
	if len(d.spares) >= n {
		return nil
	}
	wd := WritingDir(d.path)
	if err := os.Mkdir(wd, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("reserve a record file in %s: %w", d.path, err)
	}
	if err := checkDir(wd); err != nil {
		return fmt.Errorf("reserve a record file in %s: %w", d.path, err)
	}
	for len(d.spares) < n {
		fd, err := unix.Open(wd, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("reserve a record file in %s: %w", d.path, err)
		}
		d.spares = append(d.spares, fd)
	}
	return nil
}

// Close releases the files Reserve allocated; d stays usable.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, fd := range d.spares {
		errs = append(errs, unix.Close(fd))
	}
	d.spares = nil
	return errors.Join(errs...)
}

func (d *Dir) takeSpare() (fd int, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.spares) == 0 {
		return -1, false
	}
	fd = d.spares[len(d.spares)-1]
	d.spares = d.spares[:len(d.spares)-1]
	return fd, true
}

// linkError says that a reserved file could not be given a name: the write
// falls back to a file of its own, and Reserve stops trying.
type linkError struct{ err error }

func (e *linkError) Error() string { return "name an unnamed file: " + e.err.Error() }
func (e *linkError) Unwrap() error { return e.err }

// fillSpare writes b to path through fd, a file from Reserve, which it
// closes: filled (and fsynced if durable), linked under a temp name in the
// writing directory, and renamed into place as writeFile does.
func fillSpare(fd int, path string, b []byte, durable bool) error {
	defer unix.Close(fd)
	dir, name := filepath.Split(path)
	tmp := tempName(filepath.Join(WritingDir(dir), name))
	if err := writeAll(fd, b, durable); err != nil {
		return fmt.Errorf("write %s: %w", path, &fs.PathError{Op: "write", Path: tmp, Err: err})
	}
	// Linking an unnamed file by descriptor (AT_EMPTY_PATH) takes
	// CAP_DAC_READ_SEARCH, which containers lack; through /proc it does not.
	if err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW); err != nil {
		return &linkError{&fs.PathError{Op: "link", Path: tmp, Err: err}}
	}
	return rename(tmp, path, durable)
}

// WriteFileAtomic writes b to path through a temp file in the same
// directory: exclusive create with mode 0600, write, fsync, rename, fsync
// the directory.
func WriteFileAtomic(path string, b []byte) error { return writeFile(path, b, true) }

// writeFile writes b to path through a temp file and a rename; if durable,
// the temp file is fsynced before the rename and the directory after it.
// The calls are raw: an os.File would register the file with the poller,
// and os.Rename would stat the target first: three more system calls a
// write, to no purpose.
func writeFile(path string, b []byte, durable bool) (err error) {
	tmp := tempName(path)
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, &fs.PathError{Op: "open", Path: tmp, Err: err})
	}
	closed := false
	defer func() {
		if !closed {
			unix.Close(fd)
		}
		if err != nil {
			unix.Unlink(tmp)
		}
	}()
	if err := writeAll(fd, b, durable); err != nil {
		return fmt.Errorf("write %s: %w", path, &fs.PathError{Op: "write", Path: tmp, Err: err})
	}
	closed = true
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	return rename(tmp, path, durable)
}

// A temp file's name is tempPrefix, the file's own name, tempMark and
// tempRandLen random bytes in hex: tempName makes it, isTempName knows it.
const (
	tempMark    = ".tmp-"
	tempRandLen = 6
)

// tempName is a fresh temp file name beside path.
func tempName(path string) string {
	dir, name := filepath.Split(path)
	var rnd [tempRandLen]byte
	_, _ = rand.Read(rnd[:])
	return filepath.Join(dir, tempPrefix+name+tempMark+hex.EncodeToString(rnd[:]))
}

// isTempName reports whether name is one tempName makes.
func isTempName(name string) bool {
	i := strings.LastIndex(name, tempMark)
	if !strings.HasPrefix(name, tempPrefix) || i <= len(tempPrefix) {
		return false
	}
	suffix := name[i+len(tempMark):]
	_, err := hex.DecodeString(suffix)
	return len(suffix) == 2*tempRandLen && err == nil
}

// RemoveLeftovers removes the temp files that writers left in the record
// directory dir and its writing directory when they were killed between
// naming a temp file and renaming it (or the host went down then): every
// reader skips them, and nothing else would remove them. It takes only
// names tempName makes, regular files, last written more than olderThan
// ago: a live writer keeps a temp name for the length of one write. It
// returns the paths it removed. Directories are checked as OpenDir checks
// them (ErrUnsafe); a missing writing directory is not an error.
func RemoveLeftovers(dir string, olderThan time.Duration) ([]string, error) {
	if err := checkDir(dir); err != nil {
		return nil, fmt.Errorf("remove leftovers: %w", err)
	}
	var removed []string
	var errs []error
	dirs := []string{dir}
	wd := WritingDir(dir)
	switch err := checkDir(wd); {
	case err == nil:
		dirs = append(dirs, wd)
	case !errors.Is(err, fs.ErrNotExist):
		errs = append(errs, fmt.Errorf("remove leftovers: %w", err))
	}
	for _, d := range dirs {
		des, err := os.ReadDir(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("remove leftovers: %w", err))
			continue
		}
		for _, de := range des {
			if !isTempName(de.Name()) {
				continue
			}
			path := filepath.Join(d, de.Name())
			fi, err := os.Lstat(path)
			if err != nil || !fi.Mode().IsRegular() || time.Since(fi.ModTime()) < olderThan {
				continue // gone, not a regular file, or a write still under way
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove leftovers: %w", err))
				continue
			}
			removed = append(removed, path)
		}
	}
	return removed, errors.Join(errs...)
}

// writeAll writes b to fd, then fsyncs it if durable.
func writeAll(fd int, b []byte, durable bool) error {
	for rest := b; len(rest) > 0; {
		n, err := unix.Write(fd, rest)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		rest = rest[n:]
	}
	if durable {
		if err := unix.Fsync(fd); err != nil {
			return fmt.Errorf("fsync: %w", err)
		}
	}
	return nil
}

// rename puts the temp file tmp in place at path (removing tmp if it
// cannot), then fsyncs the directory if durable.
func rename(tmp, path string, durable bool) error {
	if err := unix.Rename(tmp, path); err != nil {
		unix.Unlink(tmp)
		return fmt.Errorf("write %s: %w", path, &os.LinkError{Op: "rename", Old: tmp, New: path, Err: err})
	}
	if !durable {
		return nil
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// ReadFile reads and checks one record file: ReadBounded, then Parse. A
// missing file gives an error matching errors.Is(err, fs.ErrNotExist); a
// symlink, non-regular or oversized file one matching ErrUnsafe; bad content
// one matching ErrCorrupt. Every error names the file.
func ReadFile(path string) (proto.Record, error) {
	b, err := ReadBounded(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, b)
}

// Parse decodes b, the contents of the file at path. If the file has a
// record file name, the record must be the one that name says.
func Parse(path string, b []byte) (proto.Record, error) {
	rec, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// A record under another record's name (copied or renamed by hand) must
	// not stand in for that one.
	if name := filepath.Base(path); name != proto.RecordFileName(rec) {
		if _, _, isRecordName := proto.ParseFileName(name); isRecordName {
			return nil, fmt.Errorf("%s: holds the record %s: %w", path, proto.RecordFileName(rec), &CorruptError{Offset: -1, Reason: "file name does not match the record"})
		}
	}
	return rec, nil
}

// ReadBounded reads a regular file of at most MaxFileSize bytes without
// following a symlink in its last component; other files are refused with an
// error matching ErrUnsafe. Use it for any file an operator may point at.
func ReadBounded(path string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO must not hang; fstat refuses it next. The
	// descriptor stays raw: an os.File would register it with the poller
	// (two more system calls a read, for a file it cannot poll), and
	// watchers read these files on every change.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s: is a symlink: %w", path, ErrUnsafe)
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s: not a regular file (%s): %w", path, fileType(st.Mode), ErrUnsafe)
	}
	if st.Size > MaxFileSize {
		return nil, fmt.Errorf("%s: %d bytes, over the %d-byte limit: %w", path, st.Size, MaxFileSize, ErrUnsafe)
	}
	// The file may grow after fstat: the buffer holds what fstat said and
	// one byte more, and grows up to one byte past the cap.
	b := make([]byte, 0, st.Size+1)
	for {
		if len(b) == cap(b) {
			if len(b) > MaxFileSize {
				return nil, fmt.Errorf("%s: over the %d-byte limit: %w", path, MaxFileSize, ErrUnsafe)
			}
			b = slices.Grow(b, min(2*cap(b), MaxFileSize+1)-len(b))
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
	}
}

// fileType names what a non-regular file is, for an error.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	}
	return fmt.Sprintf("mode %#o", mode&unix.S_IFMT)
}

// Read reads the record of kind k for lag from d.
func (d *Dir) Read(lag string, k proto.Kind) (proto.Record, error) {
	return ReadFile(d.File(lag, k))
}

// Remove deletes the record of kind k for lag; a missing one is not an error.
func (d *Dir) Remove(lag string, k proto.Kind) error {
	if err := os.Remove(d.File(lag, k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// RemoveVersion deletes the record of kind k for lag if the file is still
// version v (see VersionOf): a writer removes its own record without
// reading it, and leaves one written after it alone. It reports whether it
// removed the file; a missing file is not an error.
func (d *Dir) RemoveVersion(lag string, k proto.Kind, v Version) (bool, error) {
	path := d.File(lag, k)
	now, err := VersionOf(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case now != v:
		return false, nil
	}
	if err := unix.Unlink(path); errors.Is(err, unix.ENOENT) {
		return false, nil
	} else if err != nil {
		return false, &fs.PathError{Op: "remove", Path: path, Err: err}
	}
	return true, nil
}

// Entry is one record file found in a directory.
type Entry struct {
	Name   string       // file name
	LAG    string       // "" for cutover
	Kind   proto.Kind   // from the file name
	Record proto.Record // nil if Err != nil
	Err    error        // why the file could not be read
	Info   fs.FileInfo
}

// List reads every record file of the directory at path, sorted by name.
// Files whose names are not record names are skipped; records that fail to
// read are returned with Err set.
func List(path string) ([]Entry, error) {
	des, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, tempPrefix) {
			continue
		}
		lag, k, ok := proto.ParseFileName(name)
		if !ok {
			continue
		}
		e := Entry{Name: name, LAG: lag, Kind: k}
		e.Info, _ = de.Info()
		e.Record, e.Err = ReadFile(filepath.Join(path, name))
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
