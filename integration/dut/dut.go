// Package dut is the device under test as SONiC runs it, on the live
// dockerd: teamd images built from the project's static binaries (there is
// no registry), a holder container whose network namespace is the test
// bed's DUT namespace, and teamd containers that join it and share the
// record directory through a bind mount from the host, as SONiC's teamd
// container shares /host/warmboot.
//
// Everything a Lab creates carries its label and is removed by ID at Close;
// Sweep removes what labs of dead processes left.
package dut

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/teamdwarm/teamdwarm/integration/testbed"
	"github.com/teamdwarm/teamdwarm/supervisor"
)

// Label marks every container and image a Lab creates; its value is the
// lab's ID, "<pid>x<random>".
const Label = "org.teamdwarm.lab"

// Binaries are the static programs that go into a teamd image.
type Binaries struct {
	Shim  string // cmd/teamd-shim: the entrypoint, and teamdctl
	Teamd string // the teamd stand-in, installed as /usr/bin/teamd.real
	Pause string // integration/cmd/pause, for the holder
	// Teammgrd is integration/cmd/teammgrd, the init of a SONiC-shaped
	// image (BuildSONiCImage); only that needs it.
	Teammgrd string
}

// Lab is one test's (or the demo's) Docker side.
type Lab struct {
	Docker *client.Client
	ID     string

	mu         sync.Mutex
	containers []string // guarded by mu: IDs this lab created, in order
	images     []string // guarded by mu
}

// New connects to the local dockerd.
func New(ctx context.Context) (*Lab, error) {
	c, err := supervisor.Dial()
	if err != nil {
		return nil, err
	}
	if _, err := c.Ping(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("dockerd: %w", err)
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	return &Lab{Docker: c, ID: fmt.Sprintf("%dx%x", os.Getpid(), rnd)}, nil
}

// Entrypoint is the images' entrypoint: teamd-shim's init, one shim per
// config in /etc/teamd, each teamd with SONiC's dump directory.
var Entrypoint = []string{"/usr/bin/teamd-shim", "init", "--config-dir", "/etc/teamd", "--", "-L", "/var/warmboot/teamd/"}

// BuildImage imports an image tagged ref from bins (docker import of a
// root file system with nothing else in it). env is added to the image's
// environment, e.g. TEAMDSIM_FAULT=deaf for a teamd that never gets ready.
func (l *Lab) BuildImage(ctx context.Context, ref, version string, bins Binaries, env ...string) (string, error) {
	files := map[string]string{"usr/bin/teamd-shim": bins.Shim, "usr/bin/teamd.real": bins.Teamd, "usr/bin/pause": bins.Pause}
	links := map[string]string{"usr/bin/teamdctl": "teamd-shim"}
	return l.importImage(ctx, ref, files, links, append([]string{"ENV TEAMDWARM_IMAGE_VERSION=" + version}, envChanges(env)...), Entrypoint)
}

// SONiCEntrypoint is a SONiC-shaped image's: the teammgrd stand-in, which
// starts each teamd itself, daemonized, with no shim.
var SONiCEntrypoint = []string{"/usr/bin/teammgrd"}

// BuildSONiCImage imports a SONiC-shaped image: the container a switch
// runs before its first teamdwarm upgrade. The teamd stand-in plays
// SONiC's teamd (TEAMDSIM_PROFILE=sonic: warm stop, no passive start) as
// /usr/bin/teamd, started by the teammgrd stand-in as teammgrd starts it,
// beside a tlm_teamd decoy; teamd-shim is not in it.
func (l *Lab) BuildSONiCImage(ctx context.Context, ref, version string, bins Binaries, env ...string) (string, error) {
	if bins.Teammgrd == "" {
		return "", errors.New("dut: a SONiC-shaped image needs the teammgrd stand-in (Binaries.Teammgrd)")
	}
	files := map[string]string{"usr/bin/teamd": bins.Teamd, "usr/bin/teammgrd": bins.Teammgrd, "usr/bin/pause": bins.Pause}
	links := map[string]string{"usr/bin/tlm_teamd": "teammgrd"}
	changes := append([]string{"ENV TEAMDWARM_IMAGE_VERSION=" + version, "ENV TEAMDSIM_PROFILE=sonic"}, envChanges(env)...)
	return l.importImage(ctx, ref, files, links, changes, SONiCEntrypoint)
}

func envChanges(env []string) []string {
	var out []string
	for _, e := range env {
		out = append(out, "ENV "+e)
	}
	return out
}

// importImage imports a root file system of files (path in the image ->
// file on the host) and symlinks, with the Dockerfile-style changes.
func (l *Lab) importImage(ctx context.Context, ref string, files, links map[string]string, changes, entrypoint []string) (string, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"etc/", "etc/teamd/", "usr/", "usr/bin/", "var/", "var/warmboot/", "var/run/", "var/run/teamd/", "tmp/", "proc/", "sys/", "dev/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
			return "", err
		}
	}
	for name, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			return "", err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(b))}); err != nil {
			return "", err
		}
		if _, err := tw.Write(b); err != nil {
			return "", err
		}
	}
	for name, target := range links {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	ep, _ := json.Marshal(entrypoint)
	changes = append([]string{"ENTRYPOINT " + string(ep), "LABEL " + Label + "=" + l.ID}, changes...)
	rc, err := l.Docker.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, ref, image.ImportOptions{Changes: changes})
	if err != nil {
		return "", fmt.Errorf("import %s: %w", ref, err)
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil {
		return "", fmt.Errorf("import %s: %w", ref, err)
	}
	ins, err := l.Docker.ImageInspect(ctx, ref)
	if err != nil {
		return "", err
	}
	l.mu.Lock()
	l.images = append(l.images, ins.ID)
	l.mu.Unlock()
	return ins.ID, nil
}

// Holder is the container whose network namespace is the DUT's.
type Holder struct {
	ID  string
	Pid int // on the host, for testbed.Topology.DUTPid
}

// StartHolder starts the holder from a lab image (its pause program), with
// a network namespace of its own and nothing in it but lo.
func (l *Lab) StartHolder(ctx context.Context, img string) (*Holder, error) {
	id, err := l.create(ctx, &container.Config{Image: img, Entrypoint: []string{"/usr/bin/pause"}},
		&container.HostConfig{NetworkMode: "none"}, "teamdwarm-holder-"+l.ID)
	if err != nil {
		return nil, err
	}
	if err := l.Docker.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return nil, err
	}
	c, err := l.Docker.ContainerInspect(ctx, id)
	if err != nil {
		return nil, err
	}
	return &Holder{ID: id, Pid: c.State.Pid}, nil
}

// Teamd says how to run a teamd container.
type Teamd struct {
	Name     string // e.g. "teamd-<lab>", as the supervisor is told
	Image    string
	Holder   *Holder
	Warmboot string // host directory mounted at /var/warmboot
	Configs  string // host directory mounted at /etc/teamd
	Env      []string
	// RestartPolicy is Docker's, e.g. "unless-stopped"; none if "".
	RestartPolicy container.RestartPolicyMode
}

// RunTeamd starts a teamd container as SONiC's docker_image_ctl does:
// NET_ADMIN, the warmboot bind mount, and the network of the box (here the
// holder's).
func (l *Lab) RunTeamd(ctx context.Context, t Teamd) (string, error) {
	id, err := l.create(ctx, &container.Config{Image: t.Image, Env: t.Env},
		&container.HostConfig{
			NetworkMode:   container.NetworkMode("container:" + t.Holder.ID),
			Binds:         []string{t.Warmboot + ":/var/warmboot", t.Configs + ":/etc/teamd:ro"},
			CapAdd:        []string{"NET_ADMIN"},
			RestartPolicy: container.RestartPolicy{Name: t.RestartPolicy},
		}, t.Name)
	if err != nil {
		return "", err
	}
	return id, l.Docker.ContainerStart(ctx, id, container.StartOptions{})
}

func (l *Lab) create(ctx context.Context, cfg *container.Config, hc *container.HostConfig, name string) (string, error) {
	cfg.Labels = map[string]string{Label: l.ID}
	c, err := l.Docker.ContainerCreate(ctx, cfg, hc, nil, nil, name)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", name, err)
	}
	l.mu.Lock()
	l.containers = append(l.containers, c.ID)
	l.mu.Unlock()
	return c.ID, nil
}

// WriteConfigs writes one teamd config per LAG into dir, as teammgrd
// renders them (fast rate), with the members listed so that teamd adds
// them itself.
func WriteConfigs(dir string, lags []testbed.LAG) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, lag := range lags {
		if err := os.WriteFile(filepath.Join(dir, lag.Name+".conf"), []byte(lag.TeamdConfig(true)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// LogTail is the last n lines of container id's log, for an error.
func (l *Lab) LogTail(ctx context.Context, id string, n int) string {
	rc, err := l.Docker.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n)})
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 1<<20)); err != nil {
		return err.Error()
	}
	return out.String()
}

// Containers lists every container carrying the lab's label:
// those it created, and those a supervisor created from them (the label is
// copied with the rest of the settings).
func (l *Lab) Containers(ctx context.Context) ([]container.Summary, error) {
	return l.Docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", Label+"="+l.ID))})
}

// Close removes, by ID, every container carrying the lab's label (newest
// first, the holder last) and the lab's images.
func (l *Lab) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := removeLabelled(ctx, l.Docker, l.ID)
	l.Docker.Close()
	return err
}

func removeLabelled(ctx context.Context, c *client.Client, id string) error {
	var errs []error
	f := filters.NewArgs(filters.Arg("label", Label+"="+id))
	cs, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return err
	}
	// Containers that joined the holder's namespace go before it.
	for pass := 0; pass < 2; pass++ {
		for _, ct := range cs {
			isHolder := ct.HostConfig.NetworkMode == "none"
			if isHolder != (pass == 1) {
				continue
			}
			if err := c.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	ims, err := c.ImageList(ctx, image.ListOptions{Filters: f})
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, im := range ims {
		if _, err := c.ImageRemove(ctx, im.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Sweep removes what labs of processes that no longer exist left behind
// (a test binary killed before its cleanup).
func Sweep(ctx context.Context) error {
	c, err := supervisor.Dial()
	if err != nil {
		return err
	}
	defer c.Close()
	ls, err := listLabelled(ctx, c)
	if err != nil {
		return err
	}
	dead := map[string]bool{}
	for _, l := range ls {
		if pid, ok := labOwner(l.lab); ok && pid != os.Getpid() && syscall.Kill(pid, 0) != nil {
			dead[l.lab] = true
		}
	}
	var errs []error
	for id := range dead {
		errs = append(errs, removeLabelled(ctx, c, id))
	}
	return errors.Join(errs...)
}

// Left lists the containers and images that labs of process pid made and
// that are still there.
func Left(ctx context.Context, pid int) ([]string, error) {
	c, err := supervisor.Dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ls, err := listLabelled(ctx, c)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range ls {
		if owner, ok := labOwner(l.lab); ok && owner == pid {
			out = append(out, l.what)
		}
	}
	return out, nil
}

// labelled is a container or image that carries Label.
type labelled struct {
	lab  string // the lab's ID
	what string // "container NAME" or "image TAG"
}

func listLabelled(ctx context.Context, c *client.Client) ([]labelled, error) {
	f := filters.NewArgs(filters.Arg("label", Label))
	cs, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, err
	}
	ims, err := c.ImageList(ctx, image.ListOptions{Filters: f})
	if err != nil {
		return nil, err
	}
	var out []labelled
	for _, ct := range cs {
		out = append(out, labelled{ct.Labels[Label], "container " + strings.Join(ct.Names, ",")})
	}
	for _, im := range ims {
		out = append(out, labelled{im.Labels[Label], "image " + strings.Join(im.RepoTags, ",")})
	}
	return out, nil
}

// labOwner is the process that made a lab, from its ID ("<pid>x<random>").
func labOwner(id string) (pid int, ok bool) {
	pid, err := strconv.Atoi(strings.SplitN(id, "x", 2)[0])
	return pid, err == nil
}
