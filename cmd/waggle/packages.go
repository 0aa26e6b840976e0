// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/waggle-dev/waggle/hostagent"
	"github.com/waggle-dev/waggle/hostagent/guest/wire"
	"github.com/waggle-dev/waggle/hostagent/pkgproxy"
)

// packageOptions are the package proxy's flags of the commands that run host agents.
type packageOptions struct {
	pypi, npm, apt, aptKeyring string
	cacheSize                  byteSize
}

func (o *packageOptions) addFlags(f *pflag.FlagSet) {
	def := pkgproxy.DefaultConfig()
	f.StringVar(&o.pypi, "pypi-index", def.PyPIIndex, "upstream PyPI simple index (PEP 503/691) of the package proxy, e.g. a devpi or Artifactory index")
	f.StringVar(&o.npm, "npm-registry", def.NpmRegistry, "upstream npm registry of the package proxy, e.g. Verdaccio")
	f.StringVar(&o.apt, "apt-mirror", def.AptMirror, "upstream Debian archive (holding dists/ and pool/) of the package proxy")
	f.StringVar(&o.aptKeyring, "apt-keyring", "", "file of OpenPGP public keys guests' apt trusts besides Debian's, for an --apt-mirror signed with its own key")
	o.cacheSize = byteSize(def.CacheSize)
	f.Var(&o.cacheSize, "package-cache-size", "most bytes the package proxy's cache keeps on disk (LRU), e.g. 4GiB, 500MiB")
}

// apply sets the package proxy of a host agent whose data directory is dataDir.
func (o packageOptions) apply(cfg *hostagent.Config, dataDir string) error {
	for _, u := range []struct{ flag, v string }{{"--pypi-index", o.pypi}, {"--npm-registry", o.npm}, {"--apt-mirror", o.apt}} {
		if _, err := pkgproxy.ParseUpstream(u.v); err != nil {
			return fmt.Errorf("%s: %w", u.flag, err)
		}
	}
	cfg.PackageSocket = hostagent.PackageSocket(dataDir)
	cfg.Packages.PyPIIndex, cfg.Packages.NpmRegistry, cfg.Packages.AptMirror = o.pypi, o.npm, o.apt
	cfg.Packages.CacheSize = int64(o.cacheSize)
	if o.aptKeyring != "" {
		keys, err := os.ReadFile(o.aptKeyring)
		if err != nil {
			return fmt.Errorf("--apt-keyring: %w", err)
		}
		if len(keys) == 0 || len(keys) > wire.MaxAptKeys {
			return fmt.Errorf("--apt-keyring %s: %d bytes, want 1 to %d", o.aptKeyring, len(keys), wire.MaxAptKeys)
		}
		cfg.AptKeys = keys
	}
	return nil
}

// byteSize is a flag of a positive number of bytes: plain, or with a unit (KiB, MiB, GiB,
// TiB, or KB, MB, GB, TB in powers of 1000).
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }
func (b *byteSize) Type() string   { return "size" }

// errBadSize is wrapped by parseByteSize's errors.
var errBadSize = errors.New("want a positive size such as 4GiB, 500MiB or 1000000")

func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// parseByteSize reads a size as byteSize takes it.
func parseByteSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	num, mult := strings.TrimSpace(s), 1.0
	for _, u := range units {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || f*mult < 1 || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q: %w", s, errBadSize)
	}
	return int64(f * mult), nil
}
