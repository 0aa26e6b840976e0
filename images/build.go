// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package images

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/waggle-dev/waggle/internal/fsutil"
	"github.com/waggle-dev/waggle/internal/progress"
)

// DefaultCacheDir is the cache directory under the default data directory /var/lib/waggle.
const DefaultCacheDir = "/var/lib/waggle/cache"

// BuildConfig says where images go and where packages come from.
type BuildConfig struct {
	// CacheDir holds the images (in CacheDir/images) and the shared bootstrap tree.
	CacheDir string
	// Mirror is the Debian archive URL; empty means DefaultMirror.
	Mirror string
	// Progress receives one line per build stage; nil discards them.
	Progress *progress.Reporter
	// Parallel is how many images are built at once after the shared bootstrap; 0 means all.
	Parallel int
}

// DefaultBuildConfig builds into DefaultCacheDir from DefaultMirror, reporting to stderr.
func DefaultBuildConfig() BuildConfig {
	return BuildConfig{CacheDir: DefaultCacheDir, Mirror: DefaultMirror, Progress: progress.New(os.Stderr)}
}

// Build builds the named built-in images (all of them when names is empty) unless the cache
// already holds them. It needs root, debootstrap and mke2fs. Concurrent builds of one image, in
// this or another process, wait for each other; a build that dies leaves no image behind.
func Build(ctx context.Context, cfg BuildConfig, names ...string) error {
	if cfg.CacheDir == "" {
		return errors.New("images: build: no cache directory")
	}
	if cfg.Mirror == "" {
		cfg.Mirror = DefaultMirror
	}
	defs, err := selectDefinitions(names)
	if err != nil {
		return err
	}
	p := cfg.Progress
	var todo []Definition
	for _, def := range defs {
		if img, err := readImage(cfg.CacheDir, def.Name, def.Hash()); err == nil {
			p.Printf(def.Name, "up to date: %s", img.Path)
			continue
		}
		todo = append(todo, def)
	}
	if len(todo) == 0 {
		return nil
	}
	start := time.Now()
	if err := preflight("building", "debootstrap", "chroot", "cp", "mke2fs"); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(imageDir(cfg.CacheDir), "tmp"), 0o755); err != nil {
		return fmt.Errorf("images: build: %w", err)
	}
	boot, err := ensureBootstrap(ctx, cfg, p)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	if cfg.Parallel > 0 {
		g.SetLimit(cfg.Parallel)
	}
	var built atomic.Int64
	bar := p.Bar("images", "build", len(todo))
	for _, def := range todo {
		g.Go(func() error {
			ok, err := buildImage(gctx, cfg, p, boot, def)
			if ok {
				built.Add(1)
			}
			if err == nil {
				bar.Add(1)
			}
			return err
		})
	}
	err = g.Wait()
	bar.Done(fmt.Sprintf("%d of %d built", built.Load(), len(todo)))
	if err != nil {
		return err
	}
	p.Printf("images", "ready in %s, bootstrap included", progress.Elapsed(time.Since(start)))
	return nil
}

func selectDefinitions(names []string) ([]Definition, error) {
	if len(names) == 0 {
		return Definitions(), nil
	}
	var defs []Definition
	for _, n := range names {
		def, ok := Lookup(n)
		if !ok {
			return nil, fmt.Errorf("images: unknown image %q (built-in images: %s)", n, strings.Join(Names(), ", "))
		}
		if !slices.ContainsFunc(defs, func(d Definition) bool { return d.Name == n }) {
			defs = append(defs, def)
		}
	}
	return defs, nil
}

// preflight checks that we run as root and have the tools an action needs, naming the fix.
func preflight(action string, tools ...string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("images: %s needs root (chroot, file ownership); run it as root, e.g. with sudo", action)
	}
	var missing []string
	for _, tool := range tools {
		if _, err := lookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("images: %s needs %s; install with `apt-get install debootstrap e2fsprogs coreutils`",
			action, strings.Join(missing, ", "))
	}
	return nil
}

// lookPath finds a tool on the build PATH (not the caller's).
func lookPath(tool string) (string, error) {
	for _, dir := range filepath.SplitList(defaultPath) {
		p := filepath.Join(dir, tool)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s", tool, defaultPath)
}

// ensureBootstrap returns the shared debootstrap tree, making it first if it is not cached.
func ensureBootstrap(ctx context.Context, cfg BuildConfig, p *progress.Reporter) (_ string, err error) {
	const label = "bootstrap"
	// Trees live in their own directory, apart from image files of any name.
	trees := filepath.Join(imageDir(cfg.CacheDir), "bootstrap")
	dir := filepath.Join(trees, Suite+"-"+bootstrapHash())
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(trees, 0o755); err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	unlock, err := fsutil.Lock(ctx, filepath.Join(trees, "lock"), func() {
		p.Printf(label, "waiting for another build of the bootstrap tree")
	})
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	work, err := newWorkDir(cfg.CacheDir, "bootstrap+")
	if err != nil {
		return "", err
	}
	defer dropWorkDir(p, label, work, &err)
	root := filepath.Join(work, "root")
	logPath := filepath.Join(work, "build.log")
	err = stage(p, label, "debootstrap", fmt.Sprintf("%s minbase + %s from %s", Suite, bootstrapInclude, cfg.Mirror), func() (string, error) {
		sum := newDebootstrapSummary(p, label)
		err := run(ctx, logPath, buildEnv(), sum.line, "debootstrap", "--variant=minbase", "--include="+bootstrapInclude,
			"--components=main", Suite, root, cfg.Mirror)
		return fmt.Sprintf("%d packages", sum.retrieved.Load()), err
	})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, "etc/dpkg/dpkg.cfg.d/waggle-nodoc"), []byte(dpkgExcludes), 0o644); err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	debs, _ := filepath.Glob(filepath.Join(root, "var/cache/apt/archives/*.deb"))
	for _, d := range debs {
		if err := os.Remove(d); err != nil {
			return "", fmt.Errorf("bootstrap: %w", err)
		}
	}
	if err := unmountUnder(root); err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	if err := os.Rename(root, dir); err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	// Trees of older bootstrap versions are no longer used by this builder.
	old, _ := filepath.Glob(filepath.Join(trees, "*-*"))
	for _, o := range old {
		if o != dir {
			if err := removeWorkDir(o); err != nil {
				return "", fmt.Errorf("remove old bootstrap tree: %w", err)
			}
		}
	}
	return dir, nil
}

// debootstrapSummary turns debootstrap's line per package into a line per phase.
type debootstrapSummary struct {
	p          *progress.Reporter
	label      string
	start      time.Time
	retrieved  atomic.Int64
	extracting atomic.Bool
}

func newDebootstrapSummary(p *progress.Reporter, label string) *debootstrapSummary {
	return &debootstrapSummary{p: p, label: label, start: time.Now()}
}

func (s *debootstrapSummary) line(l string) {
	msg, ok := strings.CutPrefix(l, "I: ")
	switch {
	case !ok && (strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ")):
		s.p.Printf(s.label, "debootstrap: %s", l)
	case !ok:
	case strings.HasPrefix(msg, "Retrieving ") && !strings.HasPrefix(msg, "Retrieving InRelease") &&
		!strings.HasPrefix(msg, "Retrieving Release") && !strings.HasPrefix(msg, "Retrieving Packages"):
		if s.retrieved.Add(1) == 1 {
			s.phase("retrieving packages")
		}
	case strings.HasPrefix(msg, "Extracting "):
		if !s.extracting.Swap(true) {
			s.phase("extracting packages")
		}
	case strings.HasSuffix(msg, "packages...") || strings.HasSuffix(msg, "system...") || strings.HasPrefix(msg, "Base system installed"):
		s.phase(strings.ToLower(strings.TrimSuffix(msg, "...")))
	}
}

func (s *debootstrapSummary) phase(what string) {
	s.p.Printf(s.label, "debootstrap: %s (%d packages retrieved, %.1fs)", what, s.retrieved.Load(), time.Since(s.start).Seconds())
}

var newlyInstalledRE = regexp.MustCompile(`(\d+) newly installed`)

// buildImage builds one built-in image from the bootstrap tree and publishes it. It reports
// false if another process built it meanwhile.
func buildImage(ctx context.Context, cfg BuildConfig, p *progress.Reporter, boot string, def Definition) (_ bool, err error) {
	hash := def.Hash()
	unlock, err := fsutil.Lock(ctx, filepath.Join(imageDir(cfg.CacheDir), def.Name+".lock"), func() {
		p.Printf(def.Name, "waiting for another build of this image")
	})
	if err != nil {
		return false, err
	}
	defer unlock()
	if _, err := readImage(cfg.CacheDir, def.Name, hash); err == nil {
		p.Printf(def.Name, "built by another process")
		return false, nil
	}
	start := time.Now()
	work, err := newWorkDir(cfg.CacheDir, "image-"+def.Name+"+")
	if err != nil {
		return false, err
	}
	defer dropWorkDir(p, def.Name, work, &err)
	root := filepath.Join(work, "root")
	logPath := filepath.Join(work, "build.log")
	env := buildEnv()

	if err := stage(p, def.Name, "copy", "", func() (string, error) {
		return "bootstrap tree copied", run(ctx, logPath, env, nil, "cp", "-a", "--reflink=auto", boot, root)
	}); err != nil {
		return false, err
	}
	if err := stage(p, def.Name, "user", "", func() (string, error) {
		r, err := os.OpenRoot(root)
		if err != nil {
			return "", err
		}
		defer r.Close()
		return "sandbox (uid 1000)", ensureUser(r)
	}); err != nil {
		return false, err
	}
	if len(def.Packages) > 0 {
		err := stage(p, def.Name, "install", "apt-get install "+strings.Join(def.Packages, " "), func() (string, error) {
			return aptInstall(ctx, root, cfg.Mirror, logPath, env, func(l string) {
				if strings.HasPrefix(l, "Fetched ") {
					p.Printf(def.Name, "install: %s", l)
				}
			}, def.Packages)
		})
		if err != nil {
			return false, err
		}
	}
	for _, step := range def.Steps {
		if err := stage(p, def.Name, "step "+step.Name, "", func() (string, error) {
			return "", run(ctx, logPath, env, nil, "chroot", root, "/bin/sh", "-eu", "-c", step.Script)
		}); err != nil {
			return false, err
		}
	}
	source := "debootstrap " + Suite
	if err := stage(p, def.Name, "finish", "", func() (string, error) {
		if err := cleanDebian(root); err != nil {
			return "", err
		}
		n, err := finish(root, identity{Name: def.Name, Hash: hash, Source: source, Env: def.Env})
		return fmt.Sprintf("cleaned; privileges stripped from %d files", n), err
	}); err != nil {
		return false, err
	}
	err = mkfsAndPublish(ctx, cfg.CacheDir, p, work, metadata{
		Name: def.Name, Hash: hash, Source: source, Packages: def.Packages, Builder: builderVersion,
	}, start)
	return err == nil, err
}

// mkfsAndPublish turns work/root into the image file and moves it into the cache.
func mkfsAndPublish(ctx context.Context, cacheDir string, p *progress.Reporter, work string, m metadata, start time.Time) error {
	ext4 := filepath.Join(work, "image.ext4")
	if err := stage(p, m.Name, "mke2fs", "", func() (string, error) {
		u, size, err := makeFS(ctx, filepath.Join(work, "root"), ext4, filepath.Join(work, "build.log"))
		m.ContentBytes, m.Files, m.Size = u.Bytes, u.Files, size
		return fmt.Sprintf("%d MiB in %d files, filesystem %d MiB", u.Bytes>>20, u.Files, size>>20), err
	}); err != nil {
		return err
	}
	m.Built = time.Now().UTC()
	m.BuildSeconds = time.Since(start).Seconds()
	img, err := publish(cacheDir, ext4, m)
	if err != nil {
		return fmt.Errorf("image %s: %w", m.Name, err)
	}
	p.Printf(m.Name, "ready: %s (%.1fs)", img.Path, m.BuildSeconds)
	return nil
}

// aptInstall installs packages inside root with apt-get (chrooted, no recommends) and returns a
// summary. The bootstrap's package lists are used unless the mirror changed.
func aptInstall(ctx context.Context, root, mirror, logPath string, env []string, onLine func(string), pkgs []string) (string, error) {
	sources := filepath.Join(root, "etc/apt/sources.list")
	want := fmt.Sprintf("deb %s %s main\n", mirror, Suite)
	apt := []string{root, "apt-get", "-q", "-y", "-o", "APT::Sandbox::User=root", "-o", "Dpkg::Use-Pty=0",
		"-o", "Acquire::Retries=3", "-o", "Acquire::Languages=none",
		"-o", "Dpkg::Options::=--force-unsafe-io"} // no fsync per file: a failed build is thrown away anyway
	if old, err := os.ReadFile(sources); err != nil || string(old) != want {
		if err := os.WriteFile(sources, []byte(want), 0o644); err != nil {
			return "", err
		}
		if err := run(ctx, logPath, env, nil, "chroot", append(apt, "update")...); err != nil {
			return "", err
		}
	}
	var installed string
	err := run(ctx, logPath, env, func(l string) {
		if m := newlyInstalledRE.FindStringSubmatch(l); m != nil {
			installed = m[1]
		}
		onLine(l)
	}, "chroot", append(append(apt, "--no-install-recommends", "install"), pkgs...)...)
	return installed + " packages installed", err
}

// newWorkDir makes a fresh scratch directory in the cache's tmp directory, named prefix + a
// random suffix, after removing earlier ones with that prefix (left by builds that died; the
// caller holds the lock that owns the prefix).
func newWorkDir(cacheDir, prefix string) (string, error) {
	tmp := filepath.Join(imageDir(cacheDir), "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("work dir: %w", err)
	}
	stale, _ := filepath.Glob(filepath.Join(tmp, prefix+"*"))
	for _, s := range stale {
		if err := removeWorkDir(s); err != nil {
			return "", fmt.Errorf("remove stale work dir: %w", err)
		}
	}
	dir, err := os.MkdirTemp(tmp, prefix)
	if err != nil {
		return "", fmt.Errorf("work dir: %w", err)
	}
	return dir, nil
}

// removeWorkDir detaches any mount left inside dir (debootstrap mounts /proc and /sys in its
// target) and then deletes it.
func removeWorkDir(dir string) error {
	if err := unmountUnder(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// dropWorkDir removes a build's work directory. If the build failed (*errp is set) it first
// keeps the build log as tmp/<label>.failed.log and names it in the error. A failure to clean up
// is reported, not fatal: the next build with the same prefix removes the directory.
func dropWorkDir(p *progress.Reporter, label, dir string, errp *error) {
	if *errp != nil {
		kept := filepath.Join(filepath.Dir(dir), label+".failed.log")
		if err := os.Rename(filepath.Join(dir, "build.log"), kept); err == nil {
			*errp = fmt.Errorf("%w\n(full log: %s)", *errp, kept)
		}
	}
	if err := removeWorkDir(dir); err != nil {
		p.Printf(label, "cleanup: %v", err)
	}
}

// unmountUnder lazily unmounts every mount point below dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	return nil
}

// unescapeMountPath decodes the octal escapes (\040 for space) of /proc/self/mountinfo.
func unescapeMountPath(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
