// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/images"
	"github.com/waggle-dev/waggle/internal/progress"
)

// defaultDataDir is where a host keeps its state; the image cache is its cache subdirectory.
const defaultDataDir = "/var/lib/waggle"

// cacheDir is the cache directory inside a data directory.
func cacheDir(dataDir string) string { return filepath.Join(dataDir, "cache") }

func newImagesCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Build, import and list guest images",
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", defaultDataDir, "data directory; images are cached in its cache/images")
	cmd.AddCommand(newImagesBuildCmd(&dataDir), newImagesLsCmd(&dataDir), newImagesImportCmd(&dataDir), newImagesPruneCmd(&dataDir))
	return cmd
}

func newImagesBuildCmd(dataDir *string) *cobra.Command {
	var mirror string
	cmd := &cobra.Command{
		Use:   "build [NAME...]",
		Short: "Build the built-in guest images (all when no NAME is given) unless cached",
		Long: "Build the built-in guest images from Debian packages with debootstrap into read-only ext4\n" +
			"files, skipping those whose definition is already built. Needs root, debootstrap and\n" +
			"e2fsprogs. Built-in images: " + fmt.Sprint(images.Names()) + ".",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := images.DefaultBuildConfig()
			cfg.CacheDir = cacheDir(*dataDir)
			cfg.Mirror = mirror
			cfg.Progress = progress.New(cmd.ErrOrStderr())
			return images.Build(cmd.Context(), cfg, args...)
		},
	}
	cmd.Flags().StringVar(&mirror, "mirror", cmp.Or(os.Getenv("WAGGLE_DEBIAN_MIRROR"), images.DefaultMirror),
		"Debian archive to install from (also WAGGLE_DEBIAN_MIRROR)")
	return cmd
}

func newImagesLsCmd(dataDir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the cached guest images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := images.List(cacheDir(*dataDir))
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tHASH\tSTATE\tFS SIZE\tON DISK\tBUILT\tSOURCE\tPATH")
			built := map[string]bool{}
			for _, img := range list {
				state := "imported"
				if def, ok := images.Lookup(img.Name); ok {
					state = "stale"
					if def.Hash() == img.Hash {
						state = "current"
					}
				}
				built[img.Name] = built[img.Name] || state != "stale"
				fmt.Fprintf(w, "%s\t%s\t%s\t%d MiB\t%s\t%s\t%s\t%s\n", img.Name, img.Hash, state, img.Size>>20, allocated(img.Path),
					img.Built.Local().Format("2006-01-02 15:04"), img.Source, img.Path)
			}
			for _, def := range images.Definitions() {
				if !built[def.Name] {
					fmt.Fprintf(w, "%s\t%s\tnot built\t-\t-\t-\t-\t-\n", def.Name, def.Hash())
				}
			}
			return w.Flush()
		},
	}
}

func newImagesImportCmd(dataDir *string) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "import REF --name NAME",
		Short: "Flatten an OCI image (registry reference or OCI layout directory) into a guest image",
		Long: "Flatten an OCI image into a read-only ext4 guest image called NAME. REF is a registry\n" +
			"reference (host/repo:tag, host/repo@sha256:...) or the path of a local OCI image layout\n" +
			"directory. The user sandbox (uid 1000) is added if missing and setuid bits are removed.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := images.Import(cmd.Context(), images.ImportConfig{
				CacheDir: cacheDir(*dataDir),
				Progress: progress.New(cmd.ErrOrStderr()),
			}, args[0], name)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), img.Path)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the guest image to create (required)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newImagesPruneCmd(dataDir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Delete images of older definitions and replaced imports",
		Long: "Delete the cached images that no VM can be started from any more: built-in images whose\n" +
			"definition changed, and imports replaced by a newer import of the same name.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			gone, err := images.Prune(cacheDir(*dataDir))
			for _, img := range gone {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s (%s)\n", img.Path, img.Name)
			}
			return err
		},
	}
}

// allocated is how much host disk a (sparse) image file takes.
func allocated(path string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "?"
	}
	return fmt.Sprintf("%d MiB", st.Blocks*512>>20)
}
