// Package enginetest is an in-memory Docker Engine for testing code that
// drives containers through supervisor.Engine: containers and images live in
// maps, and hooks stand for the processes inside a container (a test's
// stand-in shims write their records from them). Faults are injected per
// call. Like mdlayher's nltest for netlink, it lets the supervisor's failure
// paths run deterministically and fast; the tests on a live dockerd in
// integration/ stay, for what only dockerd can show.
//
// What it models of dockerd: names are unique; create merges the image's
// environment, entrypoint, command and labels into the container's config as
// dockerd does, and inspect shows the merged config; start, stop, kill, wait,
// rename, update of the restart policy, remove (refused for a running
// container unless forced), logs, exec with an exit code, and pause (Pause,
// for a test; ContainerUnpause): a paused container's signals wait for the
// unpause, but SIGKILL, which ends it at once. Errors are the
// errdefs kinds dockerd's client returns (cerrdefs.IsNotFound,
// cerrdefs.IsConflict).
package enginetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Engine is the fake. The zero value is not usable; use New. Hooks may be
// set before the first call; they run without the engine's lock held, so
// they may call the engine back.
type Engine struct {
	// Start is called when a container starts: its processes begin.
	Start func(c *Container)
	// Signal is called for every signal a container's PID 1 gets, from
	// ContainerKill or ContainerStop. The default ends the container on
	// SIGKILL (code 137), SIGTERM and SIGINT (code 0), and ignores others.
	// A hook that wants the container to end calls Exit.
	Signal func(c *Container, sig string)
	// Exited is called after a container stopped, however it stopped
	// (exit, signal, forced remove): its processes are gone.
	Exited func(c *Container)
	// Created is called after a create did its work, before the call
	// returns: a test's supervisor can die there, as one killed while
	// dockerd finished its create.
	Created func(c *Container)
	// Exec answers a command run in a container; the default fails it
	// with code 127, "not found".
	Exec func(c *Container, cmd []string) (stdout, stderr string, code int)
	// Fail, if set, is asked before every call with the operation (the
	// method name without "Container", e.g. "Kill") and its target (a
	// container name or ID, an image reference) and args (the signal of a
	// kill, the new name of a rename): a non-nil error is that call's
	// result, and the call does nothing.
	Fail func(op, target string, args ...string) error

	mu         sync.Mutex
	containers []*Container                     // guarded by mu, in creation order
	images     map[string]image.InspectResponse // guarded by mu: by reference and by ID
	execs      map[string]*execution            // guarded by mu
	calls      []string                         // guarded by mu
	stopped    []*Container                     // guarded by mu: for Exited, not told yet
}

// New returns an engine with no containers and no images.
func New() *Engine {
	return &Engine{images: map[string]image.InspectResponse{}, execs: map[string]*execution{}}
}

// Container is one container of the fake. Its fields are the engine's:
// read them through Engine.Get, which copies them under the lock.
type Container struct {
	ID         string
	Name       string // without dockerd's leading "/"
	Image      string // the reference it was created from
	ImageID    string
	Config     container.Config
	HostConfig container.HostConfig
	Running    bool
	Paused     bool
	ExitCode   int
	Pid        int
	Started    time.Time
	Finished   time.Time
	Log        string

	exited  chan struct{} // closed when the container stops; remade at start
	pending []string      // signals sent while paused
}

type execution struct {
	c    *Container
	cmd  []string
	code int
}

// AddImage makes an image with config present under ref and returns its ID.
func (e *Engine) AddImage(ref string, cfg *dockerspec.DockerOCIImageConfig) string {
	if cfg == nil {
		cfg = &dockerspec.DockerOCIImageConfig{}
	}
	id := "sha256:" + randomID()
	im := image.InspectResponse{ID: id, RepoTags: []string{ref}, Config: cfg}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.images[ref], e.images[id] = im, im
	return id
}

// Get returns a copy of the container named or identified by nameOrID.
func (e *Engine) Get(nameOrID string) (Container, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.find(nameOrID)
	if c == nil {
		return Container{}, false
	}
	return *c, true
}

// List returns a copy of every container, in creation order.
func (e *Engine) List() []Container {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Container, 0, len(e.containers))
	for _, c := range e.containers {
		out = append(out, *c)
	}
	return out
}

// Calls lists the calls made so far, e.g. "Kill teamd_bak SIGUSR1".
func (e *Engine) Calls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls)
}

// Exit ends a running container with code, as its PID 1 exiting would.
func (e *Engine) Exit(id string, code int) {
	defer e.tellExits()
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.find(id); c != nil {
		e.exit(c, code)
	}
}

// Logf appends a line to a container's log.
func (e *Engine) Logf(id, format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.find(id); c != nil {
		c.Log += fmt.Sprintf(format, args...) + "\n"
	}
}

// Pause freezes a running container, as docker pause does.
func (e *Engine) Pause(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.find(id); c != nil && c.Running {
		c.Paused = true
	}
}

// exit is Exit with the lock held. The Exited hook is told by tellExits,
// which every method that can stop a container defers before it locks.
func (e *Engine) exit(c *Container, code int) {
	if !c.Running {
		return
	}
	c.Running, c.Paused, c.pending, c.ExitCode, c.Pid, c.Finished = false, false, nil, code, 0, time.Now()
	close(c.exited)
	e.stopped = append(e.stopped, c)
}

// tellExits calls the Exited hook for the containers stopped since the
// last call, without the lock.
func (e *Engine) tellExits() {
	e.mu.Lock()
	stopped := e.stopped
	e.stopped = nil
	e.mu.Unlock()
	for _, c := range stopped {
		if e.Exited != nil {
			e.Exited(c)
		}
	}
}

// find looks a container up by exact name or by ID or unique ID prefix.
func (e *Engine) find(nameOrID string) *Container {
	name := strings.TrimPrefix(nameOrID, "/")
	for _, c := range e.containers {
		if c.Name == name || c.ID == nameOrID {
			return c
		}
	}
	var hit *Container
	for _, c := range e.containers {
		if len(nameOrID) >= 3 && strings.HasPrefix(c.ID, nameOrID) {
			if hit != nil {
				return nil
			}
			hit = c
		}
	}
	return hit
}

// enter records a call and asks Fail about it.
func (e *Engine) enter(op, target string, args ...string) error {
	e.mu.Lock()
	e.calls = append(e.calls, strings.TrimSpace(op+" "+target+" "+strings.Join(args, " ")))
	e.mu.Unlock()
	if e.Fail != nil {
		return e.Fail(op, target, args...)
	}
	return nil
}

func notFound(what string) error {
	return fmt.Errorf("no such %s: %w", what, cerrdefs.ErrNotFound)
}

func conflict(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), cerrdefs.ErrConflict)
}

// begin starts a call on a container: it records the call, asks Fail, and
// finds the container, failing as dockerd does.
func (e *Engine) begin(op, nameOrID string, args ...string) (*Container, error) {
	if err := e.enter(op, nameOrID, args...); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.get(nameOrID)
}

// get is find that fails as dockerd does.
func (e *Engine) get(nameOrID string) (*Container, error) {
	if c := e.find(nameOrID); c != nil {
		return c, nil
	}
	return nil, notFound("container: " + nameOrID)
}

// ContainerInspect implements supervisor.Engine.
func (e *Engine) ContainerInspect(_ context.Context, nameOrID string) (container.InspectResponse, error) {
	c, err := e.begin("Inspect", nameOrID)
	if err != nil {
		return container.InspectResponse{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return inspect(c), nil
}

func inspect(c *Container) container.InspectResponse {
	status := container.StateExited
	switch {
	case c.Running:
		status = container.StateRunning
	case c.Started.IsZero():
		status = container.StateCreated
	}
	if c.Paused {
		status = container.StatePaused
	}
	st := &container.State{Status: status, Running: c.Running, Paused: c.Paused, Pid: c.Pid, ExitCode: c.ExitCode}
	if !c.Started.IsZero() {
		st.StartedAt = c.Started.UTC().Format(time.RFC3339Nano)
	}
	if !c.Finished.IsZero() {
		st.FinishedAt = c.Finished.UTC().Format(time.RFC3339Nano)
	}
	cfg, hc := c.Config, c.HostConfig
	// PID 1's command line, as dockerd shows it.
	var path string
	argv := append(append([]string(nil), cfg.Entrypoint...), cfg.Cmd...)
	if len(argv) > 0 {
		path, argv = argv[0], argv[1:]
	}
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: c.ID, Name: "/" + c.Name, Image: c.ImageID, State: st, HostConfig: &hc,
			Path: path, Args: argv},
		Config:          &cfg,
		Mounts:          mounts(c.HostConfig),
		NetworkSettings: &container.NetworkSettings{},
	}
}

// mounts is what inspect shows of a host config's binds and mounts.
func mounts(hc container.HostConfig) []container.MountPoint {
	var out []container.MountPoint
	for _, b := range hc.Binds {
		parts := strings.Split(b, ":")
		if len(parts) < 2 {
			continue
		}
		out = append(out, container.MountPoint{Type: mount.TypeBind, Source: parts[0], Destination: parts[1],
			RW: len(parts) < 3 || !strings.Contains(parts[2], "ro")})
	}
	for _, m := range hc.Mounts {
		out = append(out, container.MountPoint{Type: m.Type, Source: m.Source, Destination: m.Target, RW: !m.ReadOnly})
	}
	return out
}

// ContainerRename implements supervisor.Engine.
func (e *Engine) ContainerRename(_ context.Context, nameOrID, newName string) error {
	c, err := e.begin("Rename", nameOrID, newName)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if other := e.find(newName); other != nil && other != c {
		return conflict("the container name %q is already in use by container %q", "/"+newName, other.ID)
	}
	c.Name = strings.TrimPrefix(newName, "/")
	return nil
}

// ContainerCreate implements supervisor.Engine. The image's config is
// merged in as dockerd does.
func (e *Engine) ContainerCreate(_ context.Context, cfg *container.Config, hc *container.HostConfig, _ *network.NetworkingConfig, _ *ocispec.Platform, name string) (container.CreateResponse, error) {
	if err := e.enter("Create", name); err != nil {
		return container.CreateResponse{}, err
	}
	c, err := e.create(cfg, hc, name)
	if err != nil {
		return container.CreateResponse{}, err
	}
	if e.Created != nil {
		e.Created(c)
	}
	return container.CreateResponse{ID: c.ID}, nil
}

func (e *Engine) create(cfg *container.Config, hc *container.HostConfig, name string) (*Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.find(name) != nil {
		return nil, conflict("the container name %q is already in use", "/"+name)
	}
	im, ok := e.images[cfg.Image]
	if !ok {
		return nil, notFound("image: " + cfg.Image)
	}
	c := &Container{ID: randomID(), Name: name, Image: cfg.Image, ImageID: im.ID, Config: merge(*cfg, im.Config), exited: closed()}
	if hc != nil {
		c.HostConfig = *hc
	}
	e.containers = append(e.containers, c)
	return c, nil
}

// merge gives cfg the image's defaults where dockerd would: environment
// (the container's own win), entrypoint and command (an entrypoint given at
// creation resets the image's command), labels.
func merge(cfg container.Config, ic *dockerspec.DockerOCIImageConfig) container.Config {
	if ic == nil {
		return cfg
	}
	own := map[string]bool{}
	for _, kv := range cfg.Env {
		name, _, _ := strings.Cut(kv, "=")
		own[name] = true
	}
	var env []string
	for _, kv := range ic.Env {
		if name, _, _ := strings.Cut(kv, "="); !own[name] {
			env = append(env, kv)
		}
	}
	cfg.Env = append(env, cfg.Env...)
	switch {
	case len(cfg.Entrypoint) == 0 && len(cfg.Cmd) == 0:
		cfg.Entrypoint, cfg.Cmd = ic.Entrypoint, ic.Cmd
	case len(cfg.Entrypoint) == 0:
		cfg.Entrypoint = ic.Entrypoint
	}
	if len(ic.Labels) > 0 {
		labels := map[string]string{}
		for k, v := range ic.Labels {
			labels[k] = v
		}
		for k, v := range cfg.Labels {
			labels[k] = v
		}
		cfg.Labels = labels
	}
	if cfg.User == "" {
		cfg.User = ic.User
	}
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = ic.WorkingDir
	}
	if cfg.StopSignal == "" {
		cfg.StopSignal = ic.StopSignal
	}
	return cfg
}

// ContainerStart implements supervisor.Engine; the Start hook runs before
// it returns.
func (e *Engine) ContainerStart(_ context.Context, nameOrID string, _ container.StartOptions) error {
	c, err := e.begin("Start", nameOrID)
	if err != nil {
		return err
	}
	e.mu.Lock()
	if c.Running {
		e.mu.Unlock()
		return nil
	}
	c.Running, c.ExitCode, c.Started, c.Finished = true, 0, time.Now(), time.Time{}
	c.Pid = 1000 + len(e.calls)
	c.exited = make(chan struct{})
	e.mu.Unlock()
	if e.Start != nil {
		e.Start(c)
	}
	return nil
}

// ContainerStop implements supervisor.Engine: the stop signal, then, if
// the container still runs, SIGKILL (the fake has no time to wait).
func (e *Engine) ContainerStop(ctx context.Context, nameOrID string, _ container.StopOptions) error {
	defer e.tellExits()
	c, err := e.begin("Stop", nameOrID)
	if err != nil {
		return err
	}
	e.mu.Lock()
	sig := c.Config.StopSignal
	if sig == "" {
		sig = "SIGTERM"
	}
	running := c.Running
	e.mu.Unlock()
	if !running {
		return nil
	}
	e.signal(c, sig)
	e.mu.Lock()
	defer e.mu.Unlock()
	if c.Running {
		e.exit(c, 128+int(unix.SIGKILL))
	}
	return nil
}

// ContainerKill implements supervisor.Engine; the Signal hook runs before
// it returns.
func (e *Engine) ContainerKill(_ context.Context, nameOrID, sig string) error {
	if err := e.enter("Kill", nameOrID, sig); err != nil {
		return err
	}
	e.mu.Lock()
	c, err := e.get(nameOrID)
	running := err == nil && c.Running
	e.mu.Unlock()
	if err != nil {
		return err
	}
	if !running {
		return conflict("cannot kill container: %s: container %s is not running", nameOrID, c.ID)
	}
	e.signal(c, sig)
	return nil
}

// ContainerUnpause implements supervisor.Engine: the container thaws and
// gets the signals sent while it was paused.
func (e *Engine) ContainerUnpause(_ context.Context, nameOrID string) error {
	c, err := e.begin("Unpause", nameOrID)
	if err != nil {
		return err
	}
	e.mu.Lock()
	if !c.Paused {
		e.mu.Unlock()
		return conflict("container %s is not paused", c.ID)
	}
	c.Paused = false
	pending := c.pending
	c.pending = nil
	e.mu.Unlock()
	for _, sig := range pending {
		e.signal(c, sig)
	}
	return nil
}

// signal delivers sig to c's PID 1: the hook, or the default. A paused
// container keeps it for its unpause, unless it is SIGKILL.
func (e *Engine) signal(c *Container, sig string) {
	defer e.tellExits()
	kill := strings.TrimPrefix(strings.ToUpper(sig), "SIG")
	e.mu.Lock()
	if c.Paused && kill != "KILL" && kill != "9" {
		c.pending = append(c.pending, sig)
		e.mu.Unlock()
		return
	}
	if c.Paused {
		e.exit(c, 128+int(unix.SIGKILL))
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	if e.Signal != nil {
		e.Signal(c, sig)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch strings.TrimPrefix(strings.ToUpper(sig), "SIG") {
	case "KILL", "9":
		e.exit(c, 128+int(unix.SIGKILL))
	case "TERM", "15", "INT", "2":
		e.exit(c, 0)
	}
}

// ContainerRemove implements supervisor.Engine.
func (e *Engine) ContainerRemove(_ context.Context, nameOrID string, o container.RemoveOptions) error {
	defer e.tellExits()
	c, err := e.begin("Remove", nameOrID)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c.Running && !o.Force {
		return conflict("cannot remove container %q: container is running: stop the container before removing or force remove", "/"+c.Name)
	}
	e.exit(c, 128+int(unix.SIGKILL))
	e.containers = slices.DeleteFunc(e.containers, func(x *Container) bool { return x == c })
	return nil
}

// ContainerWait implements supervisor.Engine for the condition
// "not-running" (what the supervisor waits for).
func (e *Engine) ContainerWait(ctx context.Context, nameOrID string, _ container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	resc, errc := make(chan container.WaitResponse, 1), make(chan error, 1)
	if err := e.enter("Wait", nameOrID); err != nil {
		errc <- err
		return resc, errc
	}
	e.mu.Lock()
	c, err := e.get(nameOrID)
	var exited chan struct{}
	if err == nil {
		exited = c.exited
	}
	e.mu.Unlock()
	if err != nil {
		errc <- err
		return resc, errc
	}
	go func() {
		select {
		case <-exited:
			e.mu.Lock()
			code := c.ExitCode
			e.mu.Unlock()
			resc <- container.WaitResponse{StatusCode: int64(code)}
		case <-ctx.Done():
			errc <- ctx.Err()
		}
	}()
	return resc, errc
}

// ContainerUpdate implements supervisor.Engine for the restart policy and
// the CPU shares; as dockerd does, it leaves what u does not set alone.
// Fail sees the restart policy's name and "cpu-shares=N", those set.
func (e *Engine) ContainerUpdate(_ context.Context, nameOrID string, u container.UpdateConfig) (container.UpdateResponse, error) {
	var args []string
	if u.RestartPolicy.Name != "" {
		args = append(args, string(u.RestartPolicy.Name))
	}
	if u.CPUShares != 0 {
		args = append(args, fmt.Sprintf("cpu-shares=%d", u.CPUShares))
	}
	if err := e.enter("Update", nameOrID, args...); err != nil {
		return container.UpdateResponse{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(nameOrID)
	if err != nil {
		return container.UpdateResponse{}, err
	}
	if u.RestartPolicy.Name != "" {
		c.HostConfig.RestartPolicy = u.RestartPolicy
	}
	if u.CPUShares != 0 {
		c.HostConfig.CPUShares = u.CPUShares
	}
	return container.UpdateResponse{}, nil
}

// ContainerLogs implements supervisor.Engine: the log, multiplexed as
// dockerd sends it, its last Tail lines if Tail is a number.
func (e *Engine) ContainerLogs(_ context.Context, nameOrID string, o container.LogsOptions) (io.ReadCloser, error) {
	if err := e.enter("Logs", nameOrID); err != nil {
		return nil, err
	}
	e.mu.Lock()
	c, err := e.get(nameOrID)
	var log string
	if err == nil {
		log = c.Log
	}
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	lines := strings.SplitAfter(log, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if n, err := strconv.Atoi(o.Tail); err == nil && n < len(lines) {
		lines = lines[len(lines)-n:]
	}
	var buf bytes.Buffer
	_, _ = stdcopy.NewStdWriter(&buf, stdcopy.Stderr).Write([]byte(strings.Join(lines, "")))
	return io.NopCloser(&buf), nil
}

// ContainerExecCreate implements supervisor.Engine.
func (e *Engine) ContainerExecCreate(_ context.Context, nameOrID string, o container.ExecOptions) (container.ExecCreateResponse, error) {
	c, err := e.begin("ExecCreate", nameOrID, o.Cmd...)
	if err != nil {
		return container.ExecCreateResponse{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !c.Running {
		return container.ExecCreateResponse{}, conflict("container %s is not running", c.ID)
	}
	id := randomID()
	e.execs[id] = &execution{c: c, cmd: slices.Clone(o.Cmd)}
	return container.ExecCreateResponse{ID: id}, nil
}

// ContainerExecAttach implements supervisor.Engine: the Exec hook's output
// on a stream framed as dockerd frames it.
func (e *Engine) ContainerExecAttach(_ context.Context, execID string, _ container.ExecAttachOptions) (types.HijackedResponse, error) {
	if err := e.enter("ExecAttach", execID); err != nil {
		return types.HijackedResponse{}, err
	}
	e.mu.Lock()
	x, ok := e.execs[execID]
	e.mu.Unlock()
	if !ok {
		return types.HijackedResponse{}, notFound("exec instance: " + execID)
	}
	stdout, stderr, code := "", "not found", 127
	if e.Exec != nil {
		stdout, stderr, code = e.Exec(x.c, x.cmd)
	}
	e.mu.Lock()
	x.code = code
	e.mu.Unlock()
	server, conn := net.Pipe()
	go func() {
		w := bufio.NewWriter(server)
		_, _ = stdcopy.NewStdWriter(w, stdcopy.Stdout).Write([]byte(stdout))
		_, _ = stdcopy.NewStdWriter(w, stdcopy.Stderr).Write([]byte(stderr))
		_ = w.Flush()
		server.Close()
	}()
	return types.NewHijackedResponse(conn, "application/vnd.docker.multiplexed-stream"), nil
}

// ContainerExecInspect implements supervisor.Engine.
func (e *Engine) ContainerExecInspect(_ context.Context, execID string) (container.ExecInspect, error) {
	if err := e.enter("ExecInspect", execID); err != nil {
		return container.ExecInspect{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.execs[execID]
	if !ok {
		return container.ExecInspect{}, notFound("exec instance: " + execID)
	}
	return container.ExecInspect{ExecID: execID, ContainerID: x.c.ID, ExitCode: x.code}, nil
}

// ImageInspect implements supervisor.Engine.
func (e *Engine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	if err := e.enter("ImageInspect", ref); err != nil {
		return image.InspectResponse{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	im, ok := e.images[ref]
	if !ok {
		return image.InspectResponse{}, notFound("image: " + ref)
	}
	return im, nil
}

func randomID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func closed() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
