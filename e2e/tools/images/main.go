// Command kglue-image builds kglue's OCI images without a container engine, and their SBOMs
// (e2e/kglue-images drives it):
//
//	kglue-image build --ref REF --layout DIR --tarball FILE --layer DIR [--layer DIR...]
//	    [--owner PATH=UID:GID...] [--entrypoint PATH] [--user U:G] [--env K=V...] [--workdir DIR]
//	    [--label K=V...] [--created RFC3339] [--platform linux/amd64] [--compression gzip|zstd]
//	kglue-image sbom --name NAME --version V --cargo-metadata FILE --package CRATE
//	    [--cargo-lock FILE] [--dpkg-status-dir DIR] [--created RFC3339] --out FILE.spdx.json
//	kglue-image validate [--layout DIR] [--tarball FILE]
//	kglue-image inspect --layout DIR --ref REF
//
// build turns each --layer directory into one compressed layer on top of an empty image (no base image
// is pulled: the base layer is assembled from Debian packages by the script), sets the config
// (entrypoint, user, env, working directory, labels, created), adds the image to the OCI image
// layout DIR under the annotation org.opencontainers.image.ref.name=REF (several images share one
// layout; an earlier image of the same REF is replaced and blobs nothing refers to any more are
// deleted), and writes a docker-archive tarball tagged REF (what `docker load`, `kind load
// image-archive` and `ctr images import` read). It prints "REF DIGEST SIZE MiB", the size being
// what a pull transfers: compressed layers + config + manifest.
//
// Builds are reproducible: the same inputs give the same manifest digest. Layer tarballs hold
// their entries in lexical path order, with no user or group names, uid/gid 0 unless an --owner
// prefix says otherwise, mtime --created, and no access/change times; gzip from Go's compress/gzip
// has no timestamp or file name in its header, and zstd from klauspost/compress gives the same
// bytes for the same input and level. Nothing else (host clock, temp paths, the building user)
// reaches the image.
//
// Layers are gzip (level 9) by default: every runtime and `docker load` reads it. --compression
// zstd (klauspost's best level, media type tar+zstd) is a third smaller for our binaries, and is
// read by containerd 1.5+, CRI-O, Podman and Docker 23+, but not by older Docker.
//
// sbom writes an SPDX 2.3 JSON document of one image: every crate compiled into the binary of
// --package (the resolve graph of `cargo metadata --format-version 1 --locked --filter-platform
// TARGET`, walked from the package over normal dependencies only: dev-dependencies and
// build-dependencies, and proc-macro crates with their own dependencies, run at build time and are
// not linked into the binary), each with its licence, purl pkg:cargo/NAME@VERSION and Cargo.lock
// checksum; and every Debian package whose control fields are in --dpkg-status-dir (the distroless
// /var/lib/dpkg/status.d convention), purl pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-N.
// The output is sorted and its creation time is --created, so it is reproducible too. The resolve
// graph of cargo metadata unifies features over the whole workspace (as `cargo build --workspace`
// does), so the list can hold a few crates that a `cargo build -p PACKAGE` would leave out: a
// superset, never a subset.
//
// validate runs go-containerregistry's validate.Image (every blob's digest and size, diff IDs,
// config and manifest consistency) over every image of a layout and over a docker-archive
// tarball (zstd layers are checked here, see validateImage). inspect prints one image of a
// layout as JSON: {ref, digest, size, manifest, config}.
//
// Exit codes: 0 success, 1 failure, 2 bad usage.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/klauspost/compress/zstd"
)

const usage = `usage:
  kglue-image build --ref REF --layout DIR --tarball FILE --layer DIR [--layer DIR...]
      [--owner PATH=UID:GID...] [--entrypoint PATH] [--user U:G] [--env K=V...] [--workdir DIR]
      [--label K=V...] [--created RFC3339] [--platform linux/amd64] [--compression gzip|zstd]
  kglue-image sbom --name NAME --version V --cargo-metadata FILE --package CRATE
      [--cargo-lock FILE] [--dpkg-status-dir DIR] [--created RFC3339] --out FILE.spdx.json
  kglue-image validate [--layout DIR] [--tarball FILE]
  kglue-image inspect --layout DIR --ref REF
`

// Annotations of an image's descriptor in the layout's index.json: the OCI one, and containerd's,
// which `ctr images import` of an OCI layout reads as the image name.
const (
	refNameAnnotation    = "org.opencontainers.image.ref.name"
	containerdAnnotation = "io.containerd.image.name"
)

// usageError is bad usage: exit code 2 and the usage text.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "kglue-image: %v\n", err)
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return usageError{"no subcommand"}
	}
	switch args[0] {
	case "build":
		return cmdBuild(args[1:])
	case "sbom":
		return cmdSBOM(args[1:])
	case "validate":
		return cmdValidate(args[1:])
	case "inspect":
		return cmdInspect(args[1:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return nil
	}
	return usageError{"unknown subcommand " + args[0]}
}

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

// parse parses a subcommand's flags; a flag error or a stray argument is a usageError.
func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return usageError{fs.Name() + ": " + err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fs.Name() + ": unexpected argument " + fs.Arg(0)}
	}
	return nil
}

// required fails with a usageError naming the first empty flag.
func required(sub string, flags map[string]string) error {
	keys := make([]string, 0, len(flags))
	for k := range flags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if flags[k] == "" {
			return usageError{sub + ": --" + k + " is required"}
		}
	}
	return nil
}

// parseCreated reads an RFC 3339 time (UTC, whole seconds); empty means the Unix epoch.
func parseCreated(s string) (time.Time, error) {
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usageError{"--created: " + err.Error()}
	}
	return t.UTC().Truncate(time.Second), nil
}

// keyValues turns K=V flags into a map.
func keyValues(flagName string, l list) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range l {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Sprintf("--%s %q: want KEY=VALUE", flagName, kv)}
		}
		m[k] = v
	}
	return m, nil
}

// ---------------------------------------------------------------------------------------------
// build
// ---------------------------------------------------------------------------------------------

// owner is an --owner PATH=UID:GID rule: PATH and everything beneath it get UID:GID in the layer.
type owner struct {
	prefix   string // path inside the image, without leading or trailing slash
	uid, gid int
}

func parseOwners(l list) ([]owner, error) {
	var owners []owner
	for _, s := range l {
		p, ids, ok1 := strings.Cut(s, "=")
		u, g, ok2 := strings.Cut(ids, ":")
		uid, err1 := strconv.Atoi(u)
		gid, err2 := strconv.Atoi(g)
		if !ok1 || !ok2 || err1 != nil || err2 != nil || strings.Trim(p, "/") == "" {
			return nil, usageError{fmt.Sprintf("--owner %q: want /PATH=UID:GID", s)}
		}
		owners = append(owners, owner{strings.Trim(path.Clean(p), "/"), uid, gid})
	}
	// The longest (most specific) prefix wins.
	sort.SliceStable(owners, func(i, j int) bool { return len(owners[i].prefix) > len(owners[j].prefix) })
	return owners, nil
}

// ownerOf is the uid and gid of an entry at path name (relative, no leading slash).
func ownerOf(owners []owner, name string) (int, int) {
	for _, o := range owners {
		if name == o.prefix || strings.HasPrefix(name, o.prefix+"/") {
			return o.uid, o.gid
		}
	}
	return 0, 0
}

func cmdBuild(args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	var layers, owners, envs, labels list
	fs.Var(&layers, "layer", "directory whose contents become one layer (repeatable, bottom first)")
	fs.Var(&owners, "owner", "PATH=UID:GID: owner of PATH and everything under it (default 0:0)")
	fs.Var(&envs, "env", "K=V environment variable of the image config (repeatable)")
	fs.Var(&labels, "label", "K=V label of the image config, also a manifest annotation (repeatable)")
	platform := fs.String("platform", "linux/amd64", "OS/ARCH of the image")
	entrypoint := fs.String("entrypoint", "", "the entrypoint executable")
	user := fs.String("user", "", "USER or UID:GID the entrypoint runs as")
	workdir := fs.String("workdir", "", "working directory")
	created := fs.String("created", "", "RFC 3339 time: config created, history and every file's mtime")
	ref := fs.String("ref", "", "image reference, e.g. ghcr.io/kglue/kglue-runner:0.1.0")
	layoutDir := fs.String("layout", "", "OCI image layout directory to add the image to")
	tarballPath := fs.String("tarball", "", "docker-archive tarball to write")
	compression := fs.String("compression", "gzip", "layer compression: gzip (level 9) or zstd (best)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required("build", map[string]string{"ref": *ref, "layout": *layoutDir, "tarball": *tarballPath}); err != nil {
		return err
	}
	if len(layers) == 0 {
		return usageError{"build: at least one --layer is required"}
	}
	layerType := map[string]types.MediaType{"gzip": types.OCILayer, "zstd": types.OCILayerZStd}[*compression]
	if layerType == "" {
		return usageError{"build: --compression must be gzip or zstd"}
	}
	createdAt, err := parseCreated(*created)
	if err != nil {
		return err
	}
	own, err := parseOwners(owners)
	if err != nil {
		return err
	}
	env, err := keyValues("env", envs)
	if err != nil {
		return err
	}
	labelMap, err := keyValues("label", labels)
	if err != nil {
		return err
	}
	plat, err := v1.ParsePlatform(*platform)
	if err != nil {
		return usageError{"--platform: " + err.Error()}
	}
	tag, err := name.NewTag(*ref, name.StrictValidation)
	if err != nil {
		return usageError{"--ref: " + err.Error()}
	}

	// Layers are compressed once, into files of a scratch directory, and handed to
	// go-containerregistry already compressed (it then uses the bytes as they are).
	scratch, err := os.MkdirTemp("", "kglue-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)

	// OCI media types throughout: an empty image starts as a Docker schema 2 image.
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for i, dir := range layers {
		file := filepath.Join(scratch, fmt.Sprintf("layer-%d.tar.%s", i, *compression))
		if err := writeLayer(dir, file, own, createdAt, *compression); err != nil {
			return fmt.Errorf("layer %s: %w", dir, err)
		}
		layer, err := tarball.LayerFromFile(file, tarball.WithMediaType(layerType))
		if err != nil {
			return fmt.Errorf("layer %s: %w", dir, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer: layer,
			History: v1.History{
				Created:   v1.Time{Time: createdAt},
				CreatedBy: "kglue-image build --layer " + filepath.Base(filepath.Clean(dir)),
				Comment:   "kglue-images",
			},
		})
		if err != nil {
			return err
		}
	}

	// The config: Append filled in rootfs.diff_ids and history; the rest is ours.
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: createdAt}
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	if *entrypoint != "" {
		cf.Config.Entrypoint = []string{*entrypoint}
	}
	cf.Config.User = *user
	cf.Config.WorkingDir = *workdir
	cf.Config.Env = sortedPairs(env)
	if len(labelMap) > 0 {
		cf.Config.Labels = labelMap
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	// The OCI labels are manifest annotations too: registries (GHCR shows the description and
	// source) and `crane manifest` read them without fetching the config.
	if len(labelMap) > 0 {
		img = mutate.Annotations(img, labelMap).(v1.Image)
	}

	if err := addToLayout(*layoutDir, img, tag.String(), *plat); err != nil {
		return fmt.Errorf("layout %s: %w", *layoutDir, err)
	}
	if err := tarball.WriteToFile(*tarballPath, tag, img); err != nil {
		return fmt.Errorf("tarball %s: %w", *tarballPath, err)
	}

	digest, err := img.Digest()
	if err != nil {
		return err
	}
	size, err := imageSize(img)
	if err != nil {
		return err
	}
	fmt.Printf("%s %s %.1f MiB\n", tag.String(), digest, float64(size)/(1<<20))
	return nil
}

func sortedPairs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// imageSize is what a pull transfers: the compressed layers, the config and the manifest.
func imageSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	total := m.Config.Size + int64(len(raw))
	for _, l := range m.Layers {
		total += l.Size
	}
	return total, nil
}

// writeLayer writes the contents of dir as a compressed (gzip or zstd) tar file,
// deterministically (see the package comment). Regular files, directories and symlinks keep their permission bits (setuid,
// setgid and sticky included); a file with several hard links inside dir is stored once and
// linked; devices, sockets and pipes are refused.
func writeLayer(dir, file string, owners []owner, mtime time.Time, compression string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	var zw io.WriteCloser
	if compression == "zstd" {
		zw, err = zstd.NewWriter(bw, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	} else {
		zw, err = gzip.NewWriterLevel(bw, gzip.BestCompression)
	}
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}

	// WalkDir visits entries in lexical order, so the order is the same on every machine.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		var target string
		switch mode := info.Mode(); {
		case mode.IsRegular(), mode.IsDir():
		case mode&fs.ModeSymlink != 0:
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported file type %s", p, mode.Type())
		}
		hdr, err := tar.FileInfoHeader(info, target)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid = ownerOf(owners, rel)
		hdr.Uname, hdr.Gname = "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = mtime, time.Time{}, time.Time{}
		hdr.PAXRecords, hdr.Xattrs = nil, nil //nolint:staticcheck // Xattrs: clear what FileInfoHeader may set
		hdr.Devmajor, hdr.Devminor = 0, 0
		if st, ok := info.Sys().(*syscall.Stat_t); ok && info.Mode().IsRegular() && st.Nlink > 1 {
			key := inode{uint64(st.Dev), st.Ino}
			if first, seen := links[key]; seen {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[key] = rel
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			n, err := io.Copy(tw, src)
			src.Close()
			if err != nil {
				return err
			}
			if n != hdr.Size {
				return fmt.Errorf("%s changed while it was read", p)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range []io.Closer{tw, zw} {
		if err := c.Close(); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// openLayout opens an OCI image layout, creating an empty one if dir holds none.
func openLayout(dir string, create bool) (layout.Path, error) {
	p, err := layout.FromPath(dir)
	if err == nil || !create {
		return p, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return layout.Write(dir, empty.Index)
}

// addToLayout writes img into the layout under ref (replacing an image of the same ref) and
// removes the blobs no image of the layout refers to any more.
func addToLayout(dir string, img v1.Image, ref string, plat v1.Platform) error {
	p, err := openLayout(dir, true)
	if err != nil {
		return err
	}
	ann := map[string]string{refNameAnnotation: ref, containerdAnnotation: ref}
	if err := p.ReplaceImage(img, match.Annotation(refNameAnnotation, ref),
		layout.WithAnnotations(ann), layout.WithPlatform(plat)); err != nil {
		return err
	}
	if err := collectGarbage(p); err != nil {
		return err
	}
	// go-containerregistry writes index.json executable and blobs readable by their owner only;
	// a layout is data anyone may read (a runtime under another user, a copy to a web server).
	return filepath.WalkDir(string(p), func(f string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(f, 0o755)
		}
		return os.Chmod(f, 0o644)
	})
}

// collectGarbage deletes the blobs of blobs/sha256 that no manifest listed in index.json refers to
// (the manifest itself, its config, its layers).
func collectGarbage(p layout.Path) error {
	idx, err := p.ImageIndex()
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, desc := range im.Manifests {
		keep[desc.Digest.Hex] = true
		if !desc.MediaType.IsImage() {
			continue // an index someone else put there: keep everything else too
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return err
		}
		m, err := img.Manifest()
		if err != nil {
			return err
		}
		keep[m.Config.Digest.Hex] = true
		for _, l := range m.Layers {
			keep[l.Digest.Hex] = true
		}
	}
	for _, desc := range im.Manifests {
		if !desc.MediaType.IsImage() {
			return nil
		}
	}
	entries, err := os.ReadDir(filepath.Join(string(p), "blobs", "sha256"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			if err := os.Remove(filepath.Join(string(p), "blobs", "sha256", e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// validate and inspect
// ---------------------------------------------------------------------------------------------

// layoutImages lists the images of a layout's index.json with their ref annotation.
func layoutImages(dir string) (layout.Path, []v1.Descriptor, error) {
	p, err := openLayout(dir, false)
	if err != nil {
		return "", nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return "", nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return "", nil, err
	}
	return p, im.Manifests, nil
}

func cmdValidate(args []string) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	dir := fs.String("layout", "", "OCI image layout directory: validate every image in it")
	tarballPath := fs.String("tarball", "", "docker-archive tarball: validate its image")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" && *tarballPath == "" {
		return usageError{"validate: --layout or --tarball is required"}
	}
	type named struct {
		name string
		img  func() (v1.Image, error)
	}
	var images []named
	if *dir != "" {
		p, descs, err := layoutImages(*dir)
		if err != nil {
			return err
		}
		if len(descs) == 0 {
			return fmt.Errorf("%s holds no image", *dir)
		}
		for _, d := range descs {
			d := d
			images = append(images, named{d.Annotations[refNameAnnotation] + " " + d.Digest.String(),
				func() (v1.Image, error) { return p.Image(d.Digest) }})
		}
	}
	if *tarballPath != "" {
		images = append(images, named{*tarballPath,
			func() (v1.Image, error) { return tarball.ImageFromPath(*tarballPath, nil) }})
	}
	failed := 0
	for _, n := range images {
		img, err := n.img()
		if err == nil {
			err = validateImage(img)
		}
		if err != nil {
			failed++
			fmt.Printf("%s INVALID: %v\n", n.name, err)
			continue
		}
		fmt.Printf("%s valid\n", n.name)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d images are invalid", failed, len(images))
	}
	return nil
}

// validateImage is go-containerregistry's validate.Image. That reads every layer as gzip, so an
// image with zstd layers gets its fast form (config, manifest, blobs present) and the layer checks
// here: each layer's digest and size match the manifest, its uncompressed digest the config's
// diff ID, and its tar stream reads to the end without a duplicate path.
func validateImage(img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	// By the first bytes, not the media type: a docker-archive tarball records none, and
	// go-containerregistry calls every compressed layer of one gzip.
	zstdLayers := false
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		magic := make([]byte, 4)
		_, err = io.ReadFull(rc, magic)
		rc.Close()
		if err != nil {
			return err
		}
		zstdLayers = zstdLayers || bytes.Equal(magic, zstdMagic)
	}
	if !zstdLayers {
		return validate.Image(img)
	}
	if err := validate.Image(img, validate.Fast); err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		return fmt.Errorf("the config lists %d diff IDs for %d layers", len(cf.RootFS.DiffIDs), len(layers))
	}
	for i, l := range layers {
		if err := checkLayer(l, cf.RootFS.DiffIDs[i]); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return nil
}

func checkLayer(l v1.Layer, diffID v1.Hash) error {
	wantDigest, err := l.Digest()
	if err != nil {
		return err
	}
	wantSize, err := l.Size()
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	compressed := sha256.New()
	counted := &countingReader{r: io.TeeReader(rc, compressed)}
	br := bufio.NewReader(counted)
	var r io.Reader
	if magic, _ := br.Peek(4); bytes.Equal(magic, zstdMagic) {
		zr, err := zstd.NewReader(br)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	} else {
		gr, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		r = gr
	}
	uncompressed := sha256.New()
	tr := tar.NewReader(io.TeeReader(r, uncompressed))
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if seen[hdr.Name] {
			return fmt.Errorf("duplicate path %s", hdr.Name)
		}
		seen[hdr.Name] = true
	}
	// Read what follows the tar end marker, so both digests cover the whole streams.
	if _, err := io.Copy(uncompressed, r); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(compressed.Sum(nil)); got != wantDigest.String() {
		return fmt.Errorf("digest %s, the manifest says %s", got, wantDigest)
	}
	if counted.n != wantSize {
		return fmt.Errorf("size %d, the manifest says %d", counted.n, wantSize)
	}
	if got := "sha256:" + hex.EncodeToString(uncompressed.Sum(nil)); got != diffID.String() {
		return fmt.Errorf("diff ID %s, the config says %s", got, diffID)
	}
	return nil
}

// zstdMagic starts every zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func cmdInspect(args []string) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	dir := fs.String("layout", "", "OCI image layout directory")
	ref := fs.String("ref", "", "the image's org.opencontainers.image.ref.name")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required("inspect", map[string]string{"layout": *dir, "ref": *ref}); err != nil {
		return err
	}
	p, descs, err := layoutImages(*dir)
	if err != nil {
		return err
	}
	for _, d := range descs {
		if d.Annotations[refNameAnnotation] != *ref {
			continue
		}
		img, err := p.Image(d.Digest)
		if err != nil {
			return err
		}
		m, err := img.Manifest()
		if err != nil {
			return err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		size, err := imageSize(img)
		if err != nil {
			return err
		}
		out := struct {
			Ref      string         `json:"ref"`
			Digest   string         `json:"digest"`
			Size     int64          `json:"size"`
			Manifest *v1.Manifest   `json:"manifest"`
			Config   *v1.ConfigFile `json:"config"`
		}{*ref, d.Digest.String(), size, m, cf}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return fmt.Errorf("no image %s in %s", *ref, *dir)
}

// ---------------------------------------------------------------------------------------------
// sbom
// ---------------------------------------------------------------------------------------------

// The parts of `cargo metadata --format-version 1` the SBOM reads.
type cargoMetadata struct {
	Packages         []cargoPackage `json:"packages"`
	WorkspaceMembers []string       `json:"workspace_members"`
	Resolve          *struct {
		Nodes []struct {
			ID   string `json:"id"`
			Deps []struct {
				Pkg      string `json:"pkg"`
				DepKinds []struct {
					Kind *string `json:"kind"`
				} `json:"dep_kinds"`
			} `json:"deps"`
		} `json:"nodes"`
	} `json:"resolve"`
	WorkspaceRoot string `json:"workspace_root"`
}

// cargoPackage is one entry of the metadata's packages: a crate at one version.
type cargoPackage struct {
	Name       string  `json:"name"`
	Version    string  `json:"version"`
	ID         string  `json:"id"`
	License    *string `json:"license"`    // an SPDX expression, or null
	Source     *string `json:"source"`     // registry+URL, git+URL, or null for a path
	Repository *string `json:"repository"` // the repository URL of the manifest, or null
	Targets    []struct {
		Kind []string `json:"kind"` // lib, bin, proc-macro, ...
	} `json:"targets"`
}

// SPDX 2.3 JSON, the fields used here.
type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	Name                  string            `json:"name"`
	SPDXID                string            `json:"SPDXID"`
	VersionInfo           string            `json:"versionInfo,omitempty"`
	Supplier              string            `json:"supplier,omitempty"`
	DownloadLocation      string            `json:"downloadLocation"`
	FilesAnalyzed         bool              `json:"filesAnalyzed"`
	Checksums             []spdxChecksum    `json:"checksums,omitempty"`
	Homepage              string            `json:"homepage,omitempty"`
	SourceInfo            string            `json:"sourceInfo,omitempty"`
	LicenseConcluded      string            `json:"licenseConcluded"`
	LicenseDeclared       string            `json:"licenseDeclared"`
	CopyrightText         string            `json:"copyrightText"`
	Summary               string            `json:"summary,omitempty"`
	ExternalRefs          []spdxExternalRef `json:"externalRefs,omitempty"`
	PrimaryPackagePurpose string            `json:"primaryPackagePurpose,omitempty"`
}

type spdxChecksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

type spdxExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

const noAssertion = "NOASSERTION"

const cratesIO = "registry+https://github.com/rust-lang/crates.io-index"

func cmdSBOM(args []string) error {
	fs := flag.NewFlagSet("sbom", flag.ContinueOnError)
	docName := fs.String("name", "", "what the document describes, e.g. kglue-runner (the image)")
	version := fs.String("version", "", "the image's version")
	metadataPath := fs.String("cargo-metadata", "", "output of cargo metadata --format-version 1 --filter-platform TARGET")
	pkgName := fs.String("package", "", "the workspace package whose binary is in the image")
	lockPath := fs.String("cargo-lock", "", "Cargo.lock for the crates' checksums (default: the workspace's)")
	dpkgDir := fs.String("dpkg-status-dir", "", "directory of dpkg status files of the image's Debian packages")
	created := fs.String("created", "", "RFC 3339 creation time of the document")
	namespace := fs.String("namespace", "https://github.com/kglue/kglue/spdx", "URI prefix of the documentNamespace")
	outPath := fs.String("out", "", "the SPDX JSON file to write")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required("sbom", map[string]string{"name": *docName, "version": *version,
		"cargo-metadata": *metadataPath, "package": *pkgName, "out": *outPath}); err != nil {
		return err
	}
	createdAt, err := parseCreated(*created)
	if err != nil {
		return err
	}

	raw, err := os.ReadFile(*metadataPath)
	if err != nil {
		return err
	}
	var md cargoMetadata
	if err := json.Unmarshal(raw, &md); err != nil {
		return fmt.Errorf("%s: %w", *metadataPath, err)
	}
	if *lockPath == "" {
		*lockPath = filepath.Join(md.WorkspaceRoot, "Cargo.lock")
	}
	checksums, err := lockChecksums(*lockPath)
	if err != nil {
		return err
	}
	crates, err := linkedCrates(&md, *pkgName)
	if err != nil {
		return err
	}

	imageID := "SPDXRef-Image-" + spdxIDPart(*docName)
	packages := []spdxPackage{{
		Name:                  *docName,
		SPDXID:                imageID,
		VersionInfo:           *version,
		DownloadLocation:      noAssertion,
		LicenseConcluded:      noAssertion,
		LicenseDeclared:       noAssertion,
		CopyrightText:         noAssertion,
		PrimaryPackagePurpose: "CONTAINER",
	}}
	var rels []spdxRelationship
	var contained []spdxPackage

	for _, c := range crates {
		p := spdxPackage{
			Name:             c.Name,
			SPDXID:           "SPDXRef-Package-cargo-" + spdxIDPart(c.Name+"-"+c.Version),
			VersionInfo:      c.Version,
			DownloadLocation: noAssertion,
			LicenseConcluded: noAssertion,
			LicenseDeclared:  noAssertion,
			CopyrightText:    noAssertion,
			ExternalRefs: []spdxExternalRef{{"PACKAGE-MANAGER", "purl",
				"pkg:cargo/" + url.PathEscape(c.Name) + "@" + url.PathEscape(c.Version)}},
			PrimaryPackagePurpose: "LIBRARY",
		}
		if c.Name == *pkgName {
			p.PrimaryPackagePurpose = "APPLICATION"
		}
		if c.License != nil && strings.TrimSpace(*c.License) != "" {
			p.LicenseDeclared = spdxLicense(*c.License)
		}
		switch {
		case c.Source == nil: // a path dependency: this repository
			if c.Repository != nil && *c.Repository != "" {
				p.DownloadLocation = "git+" + *c.Repository
			}
		case *c.Source == cratesIO:
			p.DownloadLocation = fmt.Sprintf("https://crates.io/api/v1/crates/%s/%s/download", c.Name, c.Version)
		case strings.HasPrefix(*c.Source, "git+"):
			p.DownloadLocation = *c.Source
		}
		if sum := checksums[c.Name+" "+c.Version]; sum != "" {
			p.Checksums = []spdxChecksum{{"SHA256", sum}}
		}
		contained = append(contained, p)
	}

	if *dpkgDir != "" {
		debs, err := debianPackages(*dpkgDir)
		if err != nil {
			return err
		}
		contained = append(contained, debs...)
	}
	sort.Slice(contained, func(i, j int) bool { return contained[i].SPDXID < contained[j].SPDXID })
	for i := 1; i < len(contained); i++ {
		if contained[i].SPDXID == contained[i-1].SPDXID {
			return fmt.Errorf("two packages have the SPDX ID %s", contained[i].SPDXID)
		}
	}
	packages = append(packages, contained...)
	rels = append(rels, spdxRelationship{"SPDXRef-DOCUMENT", "DESCRIBES", imageID})
	for _, p := range contained {
		rels = append(rels, spdxRelationship{imageID, "CONTAINS", p.SPDXID})
	}

	// The namespace must be unique per document: name, version and a hash of the contents.
	h := sha256.New()
	if err := json.NewEncoder(h).Encode(packages); err != nil {
		return err
	}
	doc := spdxDocument{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              *docName + "-" + *version,
		DocumentNamespace: fmt.Sprintf("%s/%s-%s-%s", strings.TrimSuffix(*namespace, "/"), *docName, *version, hex.EncodeToString(h.Sum(nil))[:16]),
		CreationInfo: spdxCreationInfo{
			Created:  createdAt.Format(time.RFC3339),
			Creators: []string{"Tool: kglue-image", "Organization: kglue"},
		},
		Packages:      packages,
		Relationships: rels,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	if err := os.WriteFile(*outPath, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "kglue-image: %s: %d crates, %d Debian packages\n", *outPath, len(crates), len(contained)-len(crates))
	return nil
}

// linkedCrates walks the resolve graph from the workspace package named pkgName over normal
// dependencies, leaving out proc-macro crates (and what only they depend on), and returns the
// packages reached, the root included, sorted by name and version.
func linkedCrates(md *cargoMetadata, pkgName string) ([]*cargoPackage, error) {
	if md.Resolve == nil {
		return nil, errors.New("the cargo metadata has no resolve graph (run it without --no-deps)")
	}
	byID := map[string]int{}
	for i, p := range md.Packages {
		byID[p.ID] = i
	}
	root := ""
	for _, id := range md.WorkspaceMembers {
		if i, ok := byID[id]; ok && md.Packages[i].Name == pkgName {
			root = id
		}
	}
	if root == "" {
		return nil, fmt.Errorf("no workspace package %s in the cargo metadata", pkgName)
	}
	deps := map[string][]string{}
	for _, n := range md.Resolve.Nodes {
		for _, d := range n.Deps {
			for _, k := range d.DepKinds {
				if k.Kind == nil { // a normal dependency ("dev" and "build" are not linked)
					deps[n.ID] = append(deps[n.ID], d.Pkg)
					break
				}
			}
		}
	}
	isProcMacro := func(id string) bool {
		for _, t := range md.Packages[byID[id]].Targets {
			for _, k := range t.Kind {
				if k == "proc-macro" {
					return true
				}
			}
		}
		return false
	}
	seen := map[string]bool{root: true}
	queue := []string{root}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		for _, d := range deps[id] {
			if _, ok := byID[d]; !ok {
				return nil, fmt.Errorf("the resolve graph names an unknown package %s", d)
			}
			if !seen[d] && !isProcMacro(d) {
				seen[d] = true
				queue = append(queue, d)
			}
		}
	}
	out := make([]*cargoPackage, 0, len(seen))
	for id := range seen {
		out = append(out, &md.Packages[byID[id]])
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// lockChecksums reads the checksum of each [[package]] of a Cargo.lock (version 3 or 4), keyed
// "NAME VERSION". Crates from a registry have one; path and git dependencies have none.
func lockChecksums(file string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	var nm, ver, sum string
	flush := func() {
		if nm != "" && sum != "" {
			out[nm+" "+ver] = sum
		}
		nm, ver, sum = "", "", ""
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "[[package]]" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, " = ")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		switch k {
		case "name":
			nm = v
		case "version":
			ver = v
		case "checksum":
			sum = v
		}
	}
	flush()
	return out, sc.Err()
}

// spdxLicense turns a Cargo licence into an SPDX expression: Cargo still accepts the old
// "MIT/Apache-2.0" form, which means "MIT OR Apache-2.0".
func spdxLicense(l string) string {
	parts := strings.Split(l, "/")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return strings.Join(parts, " OR ")
}

// spdxIDPart keeps the characters an SPDX ID may hold (letters, digits, '.', '-').
func spdxIDPart(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, s)
}

// debianPackages reads the dpkg status files of dir (one or more control paragraphs each) into
// SPDX packages. The Debian release for the purl's distro qualifier comes from the image's
// os-release when dir is <root>/var/lib/dpkg/status.d, else from the host's.
func debianPackages(dir string) ([]spdxPackage, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	distro := debianDistro(filepath.Join(dir, "..", "..", "..", ".."))
	var out []spdxPackage
	for _, e := range entries {
		if e.IsDir() || strings.Contains(e.Name(), ".") {
			continue // status.d/<package>.md5sums and the like are not status files
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		for _, para := range controlParagraphs(string(raw)) {
			pkg, ver, arch := para["Package"], para["Version"], para["Architecture"]
			if pkg == "" || ver == "" {
				return nil, fmt.Errorf("%s: a paragraph without Package or Version", e.Name())
			}
			purl := fmt.Sprintf("pkg:deb/debian/%s@%s?arch=%s", url.PathEscape(pkg), url.PathEscape(ver), arch)
			if distro != "" {
				purl += "&distro=" + distro
			}
			p := spdxPackage{
				Name:                  pkg,
				SPDXID:                "SPDXRef-Package-deb-" + spdxIDPart(pkg+"-"+ver+"-"+arch),
				VersionInfo:           ver,
				DownloadLocation:      noAssertion,
				LicenseConcluded:      noAssertion,
				LicenseDeclared:       noAssertion, // Debian states licences in copyright files, not fields
				CopyrightText:         noAssertion,
				Homepage:              para["Homepage"],
				Summary:               strings.SplitN(para["Description"], "\n", 2)[0],
				ExternalRefs:          []spdxExternalRef{{"PACKAGE-MANAGER", "purl", purl}},
				PrimaryPackagePurpose: "LIBRARY",
				Supplier:              "Organization: Debian", // the distribution (maintainers vary)
			}
			if src := para["Source"]; src != "" {
				p.SourceInfo = "built package from: " + src
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// controlParagraphs parses Debian control data: paragraphs separated by blank lines, "Field:
// value" lines, continuation lines starting with a space or tab.
func controlParagraphs(s string) []map[string]string {
	var out []map[string]string
	cur := map[string]string{}
	last := ""
	for _, line := range strings.Split(s, "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			if len(cur) > 0 {
				out = append(out, cur)
			}
			cur, last = map[string]string{}, ""
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				cur[last] += "\n" + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if ok {
				last = k
				cur[k] = strings.TrimSpace(v)
			}
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// debianDistro is "debian-VERSION_ID" from root's os-release (or the host's), or "".
func debianDistro(root string) string {
	for _, f := range []string{
		filepath.Join(root, "etc", "os-release"), filepath.Join(root, "usr", "lib", "os-release"),
		"/etc/os-release",
	} {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		fields := map[string]string{}
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				fields[k] = strings.Trim(v, `"`)
			}
		}
		if fields["ID"] == "debian" && fields["VERSION_ID"] != "" {
			return "debian-" + fields["VERSION_ID"]
		}
		return ""
	}
	return ""
}
