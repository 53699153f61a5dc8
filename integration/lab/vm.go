package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// VMConfig says how to boot the lab VM and what to run in it.
type VMConfig struct {
	// KernelDir holds vmlinuz (and, extracted from it, vmlinux) and
	// lib/modules/<version>/ with modules.dep: Debian's kernel package
	// unpacked by scripts/lab-deps.sh.
	KernelDir string
	// Busybox is a static busybox (Debian's busybox-static), the VM's
	// first init until the host's root is mounted.
	Busybox string
	// Command is what the VM runs once it is up, by host path (the VM's
	// root is the host's): it becomes PID 1 and must power the VM off.
	Command []string
	// Shares are host directories the VM mounts read-write at the same
	// path (the rest of the host's root is read-only there).
	Shares []string
	// Memory (MiB) and CPUs of the VM.
	Memory, CPUs int
	// Timeout bounds the whole run; the VM is killed past it.
	Timeout time.Duration
	// Console gets the VM's console, line by line.
	Console func(line string)
}

// Modules are what the VM loads before anything runs: virtio and 9p for
// the host's root, then what the lab is about.
var Modules = []string{"virtio_pci", "9pnet_virtio", "9p", "team", "team_mode_loadbalance", "bonding", "veth"}

// ExitLine is how the VM's init tells the host how its command ended; the
// host reads it from the console.
const ExitLine = "teamdwarm-lab: command exited "

// VMResult is how a VM run ended.
type VMResult struct {
	// Exit is the command's exit code as the VM reported it, -1 if it did
	// not report one (it crashed, or was killed at the timeout).
	Exit int
	// Booted is when the VM's init first ran the command, from qemu's
	// start.
	Booted time.Duration
	Took   time.Duration
}

// RunVM boots the VM, runs cfg.Command in it, and returns when the VM has
// powered off, or at the timeout or ctx's end, when qemu is killed. qemu
// runs with software emulation: KVM is not usable on the machines the lab
// runs on.
func RunVM(ctx context.Context, cfg VMConfig) (VMResult, error) {
	res := VMResult{Exit: -1}
	// The uncompressed ELF if the cache has it: the bzImage's own
	// decompression costs software emulation seconds.
	kernel := filepath.Join(cfg.KernelDir, "vmlinux")
	if _, err := os.Stat(kernel); err != nil {
		kernel = filepath.Join(cfg.KernelDir, "vmlinuz")
	}
	mods, err := moduleDir(cfg.KernelDir)
	if err != nil {
		return res, err
	}
	scratch, err := os.MkdirTemp("", "teamdwarm-lab-vm-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(scratch)
	initrd := filepath.Join(scratch, "initramfs.cpio")
	if err := writeInitramfs(initrd, cfg, mods); err != nil {
		return res, err
	}
	args := []string{
		"-accel", "tcg", "-m", strconv.Itoa(cfg.Memory), "-smp", strconv.Itoa(cfg.CPUs),
		"-nodefaults", "-display", "none", "-vga", "none", "-monitor", "none", "-serial", "stdio", "-nic", "none", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 quiet loglevel=3 panic=-1 oops=panic",
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
	}
	for i, dir := range cfg.Shares {
		args = append(args, "-virtfs", fmt.Sprintf("local,path=%s,mount_tag=share%d,security_model=none,multidevs=remap", dir, i))
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.Stdin = nil
	out, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the lab
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("qemu: %w", err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := cleanConsole(sc.Text())
		if line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, ExitLine); ok {
			res.Exit, _ = strconv.Atoi(strings.TrimSpace(rest))
		}
		if strings.HasPrefix(line, bootedLine) {
			res.Booted = time.Since(start)
			continue
		}
		if cfg.Console != nil {
			cfg.Console(line)
		}
	}
	werr := cmd.Wait()
	res.Took = time.Since(start)
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("the VM did not finish within %v: killed", cfg.Timeout)
	case werr != nil:
		return res, fmt.Errorf("qemu: %w: %s", werr, strings.TrimSpace(stderr.String()))
	case res.Exit < 0:
		return res, errors.New("the VM powered off without reporting its command's exit (see its console)")
	}
	return res, nil
}

// bootedLine is what the VM's init prints just before it runs the command.
const bootedLine = "teamdwarm-lab: booted"

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]|\x1bc|\r`)

// cleanConsole drops the firmware's terminal codes from a console line.
func cleanConsole(s string) string {
	return strings.TrimRightFunc(ansi.ReplaceAllString(s, ""), func(r rune) bool { return r == ' ' || r == '\t' })
}

// moduleDir is the kernel's lib/modules/<version> in dir.
func moduleDir(dir string) (string, error) {
	des, err := os.ReadDir(filepath.Join(dir, "lib", "modules"))
	if err != nil || len(des) != 1 {
		return "", fmt.Errorf("lab kernel %s: want vmlinuz and one lib/modules/<version> (scripts/lab-deps.sh unpacks them): %v", dir, err)
	}
	return filepath.Join(dir, "lib", "modules", des[0].Name()), nil
}

// moduleOrder is the load order of names and what they depend on, from
// modules.dep: dependencies first. It returns the modules' paths.
func moduleOrder(modDir string, names []string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("lab kernel: %w (run depmod)", err)
	}
	deps := map[string][]string{}
	byName := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		name := strings.TrimSuffix(filepath.Base(mod), ".ko")
		byName[strings.ReplaceAll(name, "-", "_")] = mod
	}
	var order []string
	var visit func(mod string)
	visit = func(mod string) {
		if slices.Contains(order, mod) {
			return
		}
		ds := deps[mod]
		for i := len(ds) - 1; i >= 0; i-- { // modprobe loads the last first
			visit(ds[i])
		}
		order = append(order, mod)
	}
	for _, n := range names {
		mod, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("lab kernel: no module %s in %s", n, modDir)
		}
		visit(mod)
	}
	return order, nil
}

// writeInitramfs writes the VM's initramfs: busybox, the modules, and an
// init that loads them, mounts the host's root (read-only) and the shares
// (read-write, at their host paths) over 9p, and switches to the host's
// root to run the command as PID 1.
func writeInitramfs(path string, cfg VMConfig, modDir string) error {
	order, err := moduleOrder(modDir, Modules)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := newCPIO(f)
	for _, d := range []string{"proc", "sys", "dev", "newroot", "mods"} {
		w.dir(d)
	}
	bb, err := os.ReadFile(cfg.Busybox)
	if err != nil {
		return fmt.Errorf("busybox: %w", err)
	}
	w.file("busybox", 0o755, bb)
	var init strings.Builder
	init.WriteString("#!/busybox sh\n# The lab VM's first init (teamdwarm integration/lab).\n")
	init.WriteString("b=/busybox\nfail() { echo \"teamdwarm-lab: $*\"; echo \"" + ExitLine + "125\"; $b poweroff -f; $b sleep 10; }\n")
	init.WriteString("$b mount -t proc proc /proc && $b mount -t sysfs sysfs /sys && $b mount -t devtmpfs devtmpfs /dev || fail mounts\n")
	for _, mod := range order {
		name := filepath.Base(mod)
		b, err := os.ReadFile(filepath.Join(modDir, mod))
		if err != nil {
			return err
		}
		w.file("mods/"+name, 0o644, b)
		fmt.Fprintf(&init, "$b insmod /mods/%s || fail insmod %s\n", name, name)
	}
	init.WriteString("$b mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /newroot || fail mount the host root\n")
	init.WriteString("for fs in 'proc proc' 'sysfs sys' 'devtmpfs dev' 'tmpfs tmp' 'tmpfs run'; do set -- $fs; $b mount -t $1 $1 /newroot/$2 || fail mount /$2; done\n")
	init.WriteString("$b mkdir -p /newroot/dev/pts /newroot/dev/shm && $b mount -t devpts devpts /newroot/dev/pts && $b mount -t tmpfs tmpfs /newroot/dev/shm\n")
	for i, dir := range cfg.Shares {
		// mkdir: a share under /tmp or /run has no mount point on their
		// fresh tmpfs; on the host's root it is there already.
		fmt.Fprintf(&init, "$b mkdir -p /newroot%s; $b mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share%d /newroot%s || fail mount %s\n",
			shellQuote(dir), i, shellQuote(dir), shellQuote(dir))
	}
	init.WriteString("echo " + bootedLine + "\n")
	init.WriteString("exec $b switch_root /newroot")
	for _, a := range cfg.Command {
		init.WriteString(" " + shellQuote(a))
	}
	init.WriteString("\nfail switch_root\n")
	w.file("init", 0o755, []byte(init.String()))
	return w.close()
}

// guestTmpfs are the directories the guest mounts fresh file systems on,
// over the host's root: what lies below them on the host is hidden unless
// shared.
var guestTmpfs = []string{"/tmp", "/run"}

// UnderGuestTmpfs reports whether the host path dir is hidden in the guest
// by one of its own tmpfs mounts (so it must be one of VMConfig.Shares).
func UnderGuestTmpfs(dir string) bool {
	for _, t := range guestTmpfs {
		if dir == t || strings.HasPrefix(dir, t+"/") {
			return true
		}
	}
	return false
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// cpioWriter writes a newc ("070701") archive, the initramfs format.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

func newCPIO(w io.Writer) *cpioWriter { return &cpioWriter{w: w, ino: 1} }

func (c *cpioWriter) entry(name string, mode uint32, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	var b bytes.Buffer
	b.WriteString(hdr)
	b.WriteString(name)
	b.WriteByte(0)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	b.Write(data)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	_, c.err = c.w.Write(b.Bytes())
}

func (c *cpioWriter) dir(name string) { c.entry(name, syscall.S_IFDIR|0o755, nil) }
func (c *cpioWriter) file(name string, perm uint32, data []byte) {
	c.entry(name, syscall.S_IFREG|perm, data)
}

func (c *cpioWriter) close() error {
	c.entry("TRAILER!!!", 0, nil)
	return c.err
}
