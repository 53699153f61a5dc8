package supervisor

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/teamdwarm/teamdwarm/proto"
)

// newContainerSettings derives the new container's settings from the old
// one (HLD a2): what the operator gave the old container at its creation —
// network mode, mounts, capabilities, environment, command, entrypoint,
// restart policy, labels — goes to the new one with the new image, and what
// the old image contributed is left to the new image. Neither the hostname
// nor a generated MAC address is copied. The shims get the standby role
// and the epoch to take over with.
//
// Docker's inspect shows the old container's settings merged with its
// image's defaults, so a value equal to the old image's default is taken as
// the image's, not the operator's.
func newContainerSettings(old container.InspectResponse, oldImage image.InspectResponse, newImage string, epoch uint64) (*container.Config, *container.HostConfig, *network.NetworkingConfig) {
	oc := *old.Config
	var ic struct {
		Env, Cmd, Entrypoint  []string
		Labels                map[string]string
		User, WorkingDir, Sig string
		health                bool
	}
	if c := oldImage.Config; c != nil {
		ic.Env, ic.Cmd, ic.Entrypoint, ic.Labels = c.Env, c.Cmd, c.Entrypoint, c.Labels
		ic.User, ic.WorkingDir, ic.Sig, ic.health = c.User, c.WorkingDir, c.StopSignal, c.Healthcheck != nil
	}
	cfg := &container.Config{
		Image:        newImage,
		Tty:          oc.Tty,
		OpenStdin:    oc.OpenStdin,
		StdinOnce:    oc.StdinOnce,
		AttachStdin:  oc.AttachStdin,
		AttachStdout: oc.AttachStdout,
		AttachStderr: oc.AttachStderr,
		StopTimeout:  oc.StopTimeout,
	}
	if oc.User != ic.User {
		cfg.User = oc.User
	}
	if oc.WorkingDir != ic.WorkingDir {
		cfg.WorkingDir = oc.WorkingDir
	}
	if oc.StopSignal != ic.Sig {
		cfg.StopSignal = oc.StopSignal
	}
	if !ic.health {
		cfg.Healthcheck = oc.Healthcheck
	}
	// An entrypoint given at creation resets the image's command, so the
	// command shown is the operator's too.
	switch {
	case !slices.Equal(oc.Entrypoint, ic.Entrypoint):
		cfg.Entrypoint, cfg.Cmd = oc.Entrypoint, oc.Cmd
	case !slices.Equal(oc.Cmd, ic.Cmd):
		cfg.Cmd = oc.Cmd
	}
	for _, kv := range oc.Env {
		name, _, _ := strings.Cut(kv, "=")
		if slices.Contains(ic.Env, kv) || name == proto.EnvRole || name == proto.EnvEpoch {
			continue
		}
		cfg.Env = append(cfg.Env, kv)
	}
	cfg.Env = append(cfg.Env, proto.EnvRole+"="+string(proto.RoleStandby), proto.EnvEpoch+"="+strconv.FormatUint(epoch, 10))
	for k, v := range oc.Labels {
		if iv, ok := ic.Labels[k]; ok && iv == v {
			continue
		}
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		cfg.Labels[k] = v
	}

	hc := *old.HostConfig
	hc.Binds = slices.Clone(hc.Binds)
	hc.Mounts = slices.Clone(hc.Mounts)
	hc.CapAdd = slices.Clone(hc.CapAdd)
	hc.CapDrop = slices.Clone(hc.CapDrop)

	var nc *network.NetworkingConfig
	if hc.NetworkMode.IsUserDefined() && old.NetworkSettings != nil {
		// On a network of its own an endpoint keeps what the operator
		// chose (a fixed address, aliases), not what was generated.
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{}}
		short := old.ID[:min(12, len(old.ID))]
		for name, ep := range old.NetworkSettings.Networks {
			if ep == nil {
				continue
			}
			nc.EndpointsConfig[name] = &network.EndpointSettings{
				IPAMConfig: ep.IPAMConfig,
				Links:      slices.Clone(ep.Links),
				Aliases:    slices.DeleteFunc(slices.Clone(ep.Aliases), func(a string) bool { return a == short }),
				DriverOpts: maps.Clone(ep.DriverOpts),
				NetworkID:  ep.NetworkID,
			}
		}
	}
	return cfg, &hc, nc
}
