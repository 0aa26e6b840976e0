// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostrpc

import (
	"errors"
	"path"
	"strings"
	"testing"
	"time"
)

// verdict is an error's code and message ("" for none), and fails the test when err is not an
// *Error: every refusal of the Limits carries a code.
func verdict(t *testing.T, err error) (string, string) {
	t.Helper()
	if err == nil {
		return "", ""
	}
	var he *Error
	if !errors.As(err, &he) {
		t.Fatalf("error %v is not a *hostrpc.Error", err)
	}
	return he.Code, he.Message
}

func TestDefaultLimitsValidate(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Limits){
		"no file bytes":        func(l *Limits) { l.MaxFileBytes = 0 },
		"negative code bytes":  func(l *Limits) { l.MaxCodeBytes = -1 },
		"default over max":     func(l *Limits) { l.Exec.Default = l.Exec.Max + time.Second },
		"sub-second default":   func(l *Limits) { l.ProcessWait.Default = time.Millisecond },
		"no install timeout":   func(l *Limits) { l.Install = Timeouts{} },
		"no processes allowed": func(l *Limits) { l.MaxProcesses = 0 },
	} {
		l := DefaultLimits()
		mod(&l)
		if err := l.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
}

func TestCheckPath(t *testing.T) {
	l := DefaultLimits()
	l.MaxPathBytes = 30
	for _, tt := range []struct {
		in, want, wantMsg string
	}{
		{"/home/sandbox/a.py", "/home/sandbox/a.py", ""},
		{"/home/sandbox/x/../a//b/", "/home/sandbox/a/b", ""},
		{"/", "/", ""},
		{"/../../etc", "/etc", ""},
		{"", "", "path is empty"},
		{"a.py", "", `path "a.py" is not absolute: start it with /, e.g. /home/sandbox/a.py`},
		{"./a", "", "not absolute"},
		{"/a\x00b", "", "contains a NUL byte"},
		{"/" + strings.Repeat("x", 30), "", "path is 31 bytes; the limit is 30 bytes"},
	} {
		got, err := l.CheckPath(tt.in)
		code, msg := verdict(t, err)
		if tt.wantMsg != "" {
			if code != CodeBadRequest || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("CheckPath(%q): %s %q, want bad_request %q", tt.in, code, msg, tt.wantMsg)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CheckPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestTimeouts(t *testing.T) {
	r := Timeouts{Default: 30 * time.Second, Max: 300 * time.Second}
	for _, tt := range []struct {
		in, want time.Duration
		wantErr  bool
	}{
		{0, 30 * time.Second, false},
		{time.Second, time.Second, false},
		{1500 * time.Millisecond, 1500 * time.Millisecond, false},
		{300 * time.Second, 300 * time.Second, false},
		{301 * time.Second, 0, true},
		{999 * time.Millisecond, 0, true},
		{-time.Second, 0, true},
	} {
		got, err := r.Timeout(tt.in)
		code, msg := verdict(t, err)
		if tt.wantErr {
			if code != CodeBadRequest || !strings.Contains(msg, "is out of range: use 1 to 300 (default 30)") {
				t.Errorf("Timeout(%s): %s %q", tt.in, code, msg)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Timeout(%s) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestCheckInstall(t *testing.T) {
	l := DefaultLimits()
	l.MaxPackages, l.MaxPackageSpecBytes = 3, 30
	for _, tt := range []struct {
		runtime  string
		packages []string
		wantCode string
		wantMsg  string
	}{
		{"python", []string{"requests", "numpy==2.1.0", "uvicorn[standard]>=0.30,<1"}, "", ""},
		{"python", []string{"pkg[a,b]"}, "", ""},
		{"node", []string{"@types/node", "lodash@^4.17.21", "left-pad"}, "", ""},
		{"python", []string{"--index-url=http://evil"}, CodeBadRequest, "invalid pip package spec"},
		{"python", []string{"requests; rm -rf /"}, CodeBadRequest, "invalid pip package spec"},
		{"python", []string{"a b"}, CodeBadRequest, "invalid"},
		{"python", []string{"./local"}, CodeBadRequest, "invalid"},
		{"python", []string{"https://x/y.whl"}, CodeBadRequest, "invalid"},
		{"node", []string{"-g"}, CodeBadRequest, "invalid npm package spec"},
		{"node", []string{"$(id)"}, CodeBadRequest, "invalid"},
		{"node", []string{"@scope/../x"}, CodeBadRequest, "invalid"},
		{"shell", []string{"curl", "g++", "jq=1.6-2.1"}, "", ""},
		{"shell", []string{"-y"}, CodeBadRequest, "invalid apt package spec"},
		{"shell", []string{"Curl"}, CodeBadRequest, "invalid apt package spec"},
		{"shell", []string{"/tmp/x.deb"}, CodeBadRequest, "invalid apt package spec"},
		{"python", nil, CodeBadRequest, "packages is empty"},
		{"python", []string{"a", "b", "c", "d"}, CodeTooLarge, "4 packages named; at most 3 per call"},
		{"python", []string{strings.Repeat("a", 31)}, CodeBadRequest, "is 31 bytes; the limit is 30 bytes"},
		{"ruby", []string{"rails"}, CodeBadRequest, "does not know runtime"},
	} {
		req := InstallRequest{Env: "e", Packages: tt.packages}
		code, msg := verdict(t, l.CheckInstall(tt.runtime, &req))
		if code != tt.wantCode || !strings.Contains(msg, tt.wantMsg) {
			t.Errorf("%s %q: %s %q, want %s %q", tt.runtime, tt.packages, code, msg, tt.wantCode, tt.wantMsg)
		}
		if code == "" && req.Timeout != l.Install.Default {
			t.Errorf("%s %q: timeout %s, want the default %s", tt.runtime, tt.packages, req.Timeout, l.Install.Default)
		}
	}
}

// TestCheckRequests checks each request's rule and that defaults are filled in.
func TestCheckRequests(t *testing.T) {
	l := DefaultLimits()
	l.MaxCodeBytes, l.MaxFileBytes = 10, 100
	for _, tt := range []struct {
		name     string
		check    func() (any, error)
		wantCode string
		wantMsg  string
		want     any
	}{
		{"exec default timeout", func() (any, error) {
			r := ExecRequest{Code: "1"}
			return r.Timeout, l.CheckExec(&r)
		}, "", "", l.Exec.Default},
		{"exec empty code", func() (any, error) { return nil, l.CheckExec(&ExecRequest{}) }, CodeBadRequest, "code is empty", nil},
		{"exec code too large", func() (any, error) { return nil, l.CheckExec(&ExecRequest{Code: strings.Repeat("x", 11)}) },
			CodeTooLarge, "code is 11 bytes; the limit is 10 bytes", nil},
		{"exec timeout over max", func() (any, error) { return nil, l.CheckExec(&ExecRequest{Code: "1", Timeout: 301 * time.Second}) },
			CodeBadRequest, "timeout_seconds 301 is out of range: use 1 to 300", nil},
		{"process default timeout", func() (any, error) {
			r := ProcessStartRequest{Code: "1"}
			return r.Timeout, l.CheckProcessStart(&r)
		}, "", "", l.Process.Default},
		{"process timeout over max", func() (any, error) {
			return nil, l.CheckProcessStart(&ProcessStartRequest{Code: "1", Timeout: 2 * time.Hour})
		}, CodeBadRequest, "use 1 to 3600", nil},
		{"wait default", func() (any, error) {
			r := ProcessRequest{ProcessID: "p-1"}
			return r.Timeout, l.CheckProcess(OpProcessWait, &r)
		}, "", "", l.ProcessWait.Default},
		{"wait over max", func() (any, error) {
			return nil, l.CheckProcess(OpProcessWait, &ProcessRequest{ProcessID: "p-1", Timeout: time.Minute})
		}, CodeBadRequest, "timeout_seconds 60 is out of range: use 1 to 50", nil},
		{"read with a timeout", func() (any, error) {
			return nil, l.CheckProcess(OpProcessRead, &ProcessRequest{ProcessID: "p-1", Timeout: time.Second})
		}, CodeBadRequest, "process_read takes no timeout", nil},
		{"no process id", func() (any, error) { return nil, l.CheckProcess(OpProcessKill, &ProcessRequest{}) },
			CodeBadRequest, "process_id \"\" is invalid", nil},
		{"long process id", func() (any, error) {
			return nil, l.CheckProcess(OpProcessKill, &ProcessRequest{ProcessID: strings.Repeat("p", 65)})
		}, CodeBadRequest, "is invalid", nil},
		{"write cleans", func() (any, error) {
			r := WriteFileRequest{Path: "/a/./b", Content: []byte("x")}
			return r.Path, l.CheckWriteFile(&r)
		}, "", "", "/a/b"},
		{"write too large", func() (any, error) {
			return nil, l.CheckWriteFile(&WriteFileRequest{Path: "/a", Content: make([]byte, 101)})
		},
			CodeTooLarge, "content is 101 bytes; the limit is 100 bytes per file", nil},
		{"write relative", func() (any, error) { return nil, l.CheckWriteFile(&WriteFileRequest{Path: "a"}) }, CodeBadRequest, "not absolute", nil},
		{"write content and ref", func() (any, error) {
			return nil, l.CheckWriteFile(&WriteFileRequest{Path: "/a", Content: []byte("x"), ContentRef: "r"})
		}, CodeBadRequest, "not both", nil},
		{"write bad mode", func() (any, error) { return nil, l.CheckWriteFile(&WriteFileRequest{Path: "/a", Mode: 0o100644}) },
			CodeBadRequest, "mode 0100644 is invalid", nil},
		{"read default max", func() (any, error) {
			r := ReadFileRequest{Path: "/a"}
			return r.Max, l.CheckReadFile(&r)
		}, "", "", int64(100)},
		{"read smaller max", func() (any, error) {
			r := ReadFileRequest{Path: "/a", Max: 7}
			return r.Max, l.CheckReadFile(&r)
		}, "", "", int64(7)},
		{"read larger max than the limit", func() (any, error) {
			r := ReadFileRequest{Path: "/a", Max: 1 << 40}
			return r.Max, l.CheckReadFile(&r)
		}, "", "", int64(100)},
		{"read negative max", func() (any, error) { return nil, l.CheckReadFile(&ReadFileRequest{Path: "/a", Max: -1}) },
			CodeBadRequest, "max -1 is negative", nil},
		{"list home", func() (any, error) {
			r := ListFilesRequest{}
			return r.Path, l.CheckListFiles(&r)
		}, "", "", HomeDir},
		{"list relative", func() (any, error) { return nil, l.CheckListFiles(&ListFilesRequest{Path: "x"}) }, CodeBadRequest, "not absolute", nil},
	} {
		got, err := tt.check()
		code, msg := verdict(t, err)
		switch {
		case code != tt.wantCode || !strings.Contains(msg, tt.wantMsg):
			t.Errorf("%s: %s %q, want %s %q", tt.name, code, msg, tt.wantCode, tt.wantMsg)
		case code == "" && got != tt.want:
			t.Errorf("%s: filled in %v, want %v", tt.name, got, tt.want)
		}
	}
}

// FuzzCheckPath checks that every accepted path comes out absolute, clean, NUL-free and
// unchanged by a second check, from input within the length limit.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"a.txt", "/etc/passwd", "../x", "/a/../../b", "", "/a\x00b", "/./", "//x//y/"} {
		f.Add(s)
	}
	l := DefaultLimits()
	f.Fuzz(func(t *testing.T, p string) {
		got, err := l.CheckPath(p)
		if err != nil {
			if code, _ := verdict(t, err); code != CodeBadRequest {
				t.Fatalf("CheckPath(%q): code %s", p, code)
			}
			return
		}
		if !strings.HasPrefix(p, "/") || len(p) > l.MaxPathBytes || strings.ContainsRune(p, 0) {
			t.Fatalf("CheckPath accepted %q", p)
		}
		if !path.IsAbs(got) || path.Clean(got) != got {
			t.Fatalf("CheckPath(%q) = %q", p, got)
		}
		if again, err := l.CheckPath(got); err != nil || again != got {
			t.Fatalf("CheckPath(%q) = %q, %v: not stable", got, again, err)
		}
	})
}

// FuzzCheckInstall checks that no accepted package spec can be read as an option or carries
// whitespace, quotes, shell metacharacters or a path, for every runtime.
func FuzzCheckInstall(f *testing.F) {
	for _, s := range []string{"requests", "numpy==2.1", "@types/node", "x[y]", "-e", "a;b", "lodash@^4", "../x", "a/b"} {
		f.Add("python", s)
		f.Add("node", s)
		f.Add("shell", s)
	}
	l := DefaultLimits()
	f.Fuzz(func(t *testing.T, runtime, pkg string) {
		req := InstallRequest{Packages: []string{pkg}}
		err := l.CheckInstall(runtime, &req)
		if err != nil {
			if code, _ := verdict(t, err); code != CodeBadRequest {
				t.Fatalf("CheckInstall(%q, %q): code %s", runtime, pkg, code)
			}
			return
		}
		if strings.HasPrefix(pkg, "-") || strings.ContainsAny(pkg, " \t\n\r'\"`$;&|\\(){}:\x00") || len(pkg) > l.MaxPackageSpecBytes {
			t.Fatalf("accepted %q for %s", pkg, runtime)
		}
		// A slash only separates an npm scope from its name.
		if scope, name, ok := strings.Cut(pkg, "/"); ok && (!strings.HasPrefix(scope, "@") || strings.HasPrefix(name, ".") || strings.Contains(name, "/")) {
			t.Fatalf("accepted a path %q for %s", pkg, runtime)
		}
	})
}

// FuzzTimeout checks that an accepted timeout lies in the range (0 gives the default).
func FuzzTimeout(f *testing.F) {
	for _, d := range []int64{0, 1, int64(time.Second), int64(time.Hour), -1, 1 << 62} {
		f.Add(d)
	}
	r := DefaultLimits().Exec
	f.Fuzz(func(t *testing.T, d int64) {
		got, err := r.Timeout(time.Duration(d))
		switch {
		case err != nil:
			if code, _ := verdict(t, err); code != CodeBadRequest || d == 0 {
				t.Fatalf("Timeout(%d): %v", d, err)
			}
		case d == 0 && got != r.Default, d != 0 && got != time.Duration(d), got < MinTimeout, got > r.Max:
			t.Fatalf("Timeout(%d) = %s", d, got)
		}
	})
}
