// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent"
	"github.com/waggle-dev/waggle/router"
)

// limitCase is one host request and the code both a router and a host agent must answer it
// with ("" for success).
type limitCase struct {
	name string
	op   string
	req  any // a hostrpc request
	want string
}

// TestLimitsSameVerdict runs one table of requests through a router (which forwards to the real
// host agent what its Limits accept) and straight to the host agent over NATS, as a caller
// that bypassed the router would: both must give the same verdict, with the same message, for
// every input, from the same Limits.
func TestLimitsSameVerdict(t *testing.T) {
	limits := hostrpc.DefaultLimits()
	limits.MaxCodeBytes, limits.MaxFileBytes, limits.MaxPathBytes = 100, 1000, 64
	limits.MaxPackages, limits.MaxPackageSpecBytes = 3, 20
	c := newCluster(t, 1, func(cfg *router.Config) { cfg.Limits = limits })
	startRealAgent(t, c, "real-1", func(cfg *hostagent.Config) { cfg.Limits = limits })
	cl := c.client(c.key("acme"), "")
	envs := map[string]string{}
	for _, rt := range router.Runtimes() {
		var env envResult
		cl.ok(toolCreate, map[string]any{"runtime": rt}, &env)
		envs[rt] = env.ID
	}
	py, node, sh := envs["python"], envs["node"], envs["shell"]
	r, acme := c.routers[0], router.Principal{Tenant: "acme", KeyID: "test"}
	proc, err := r.StartProcess(c.ctx, acme, py, router.ExecRequest{Code: "forever"})
	if err != nil {
		t.Fatal(err)
	}
	nc, _ := c.Connect(t)

	long := "/home/sandbox/" + strings.Repeat("x", 51)
	for _, tc := range []limitCase{
		{"exec", hostrpc.OpExec, hostrpc.ExecRequest{Env: py, Code: "print(1)"}, ""},
		{"exec at the code limit", hostrpc.OpExec, hostrpc.ExecRequest{Env: py, Code: strings.Repeat("x", 100)}, ""},
		{"exec over the code limit", hostrpc.OpExec, hostrpc.ExecRequest{Env: py, Code: strings.Repeat("x", 101)}, hostrpc.CodeTooLarge},
		{"exec empty code", hostrpc.OpExec, hostrpc.ExecRequest{Env: py}, hostrpc.CodeBadRequest},
		{"exec unknown language", hostrpc.OpExec, hostrpc.ExecRequest{Env: py, Code: "1", Language: "cobol"}, hostrpc.CodeBadRequest},
		{"exec longest timeout", hostrpc.OpExec, hostrpc.ExecRequest{Env: py, Code: "1", Timeout: 300 * time.Second}, ""},
		{"exec timeout over the max", hostrpc.OpExec, hostrpc.ExecRequest{Env: py, Code: "1", Timeout: 301 * time.Second}, hostrpc.CodeBadRequest},
		{"exec timeout under a second", hostrpc.OpExec, hostrpc.ExecRequest{Env: py, Code: "1", Timeout: time.Millisecond}, hostrpc.CodeBadRequest},
		{"exec negative timeout", hostrpc.OpExec, hostrpc.ExecRequest{Env: py, Code: "1", Timeout: -time.Second}, hostrpc.CodeBadRequest},
		{"start over the code limit", hostrpc.OpProcessStart, hostrpc.ProcessStartRequest{Env: py, Code: strings.Repeat("x", 101)}, hostrpc.CodeTooLarge},
		{"start timeout over the max", hostrpc.OpProcessStart, hostrpc.ProcessStartRequest{Env: py, Code: "1", Timeout: 2 * time.Hour}, hostrpc.CodeBadRequest},
		{"read process", hostrpc.OpProcessRead, hostrpc.ProcessRequest{Env: py, ProcessID: proc.ProcessID}, ""},
		{"wait process", hostrpc.OpProcessWait, hostrpc.ProcessRequest{Env: py, ProcessID: proc.ProcessID, Timeout: time.Second}, ""},
		{"wait over the max", hostrpc.OpProcessWait, hostrpc.ProcessRequest{Env: py, ProcessID: proc.ProcessID, Timeout: 51 * time.Second}, hostrpc.CodeBadRequest},
		{"wait under a second", hostrpc.OpProcessWait, hostrpc.ProcessRequest{Env: py, ProcessID: proc.ProcessID, Timeout: time.Millisecond}, hostrpc.CodeBadRequest},
		{"read unknown process", hostrpc.OpProcessRead, hostrpc.ProcessRequest{Env: py, ProcessID: "p-nope"}, hostrpc.CodeNotFound},
		{"kill without id", hostrpc.OpProcessKill, hostrpc.ProcessRequest{Env: py}, hostrpc.CodeBadRequest},
		{"kill with a long id", hostrpc.OpProcessKill, hostrpc.ProcessRequest{Env: py, ProcessID: strings.Repeat("p", 65)}, hostrpc.CodeBadRequest},
		{"install pip", hostrpc.OpInstallPackages, hostrpc.InstallRequest{Env: py, Packages: []string{"requests", "numpy==2.1.0"}}, ""},
		{"install npm", hostrpc.OpInstallPackages, hostrpc.InstallRequest{Env: node, Packages: []string{"@types/node"}}, ""},
		{"install an npm name with pip", hostrpc.OpInstallPackages, hostrpc.InstallRequest{Env: py, Packages: []string{"@types/node"}}, hostrpc.CodeBadRequest},
		{"install too many", hostrpc.OpInstallPackages, hostrpc.InstallRequest{Env: py, Packages: []string{"a", "b", "c", "d"}}, hostrpc.CodeTooLarge},
		{"install none", hostrpc.OpInstallPackages, hostrpc.InstallRequest{Env: py}, hostrpc.CodeBadRequest},
		{"install a long spec", hostrpc.OpInstallPackages, hostrpc.InstallRequest{Env: py, Packages: []string{strings.Repeat("a", 21)}}, hostrpc.CodeBadRequest},
		{"install an option", hostrpc.OpInstallPackages, hostrpc.InstallRequest{Env: py, Packages: []string{"--index-url=http://x"}}, hostrpc.CodeBadRequest},
		{"install in shell", hostrpc.OpInstallPackages, hostrpc.InstallRequest{Env: sh, Packages: []string{"curl"}}, ""},
		{"install an apt option", hostrpc.OpInstallPackages, hostrpc.InstallRequest{Env: sh, Packages: []string{"-oAPT::Get::AllowUnauthenticated=1"}}, hostrpc.CodeBadRequest},
		{"write", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: py, Path: "/home/sandbox/a.txt", Content: []byte("hi")}, ""},
		{"write cleaned", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: py, Path: "/home/sandbox/x/..//b.txt", Content: []byte("hi")}, ""},
		{"write at the file limit", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: py, Path: "/home/sandbox/c", Content: make([]byte, 1000)}, ""},
		{"write over the file limit", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: py, Path: "/home/sandbox/d", Content: make([]byte, 1001)}, hostrpc.CodeTooLarge},
		{"write relative", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: py, Path: "a.txt", Content: []byte("hi")}, hostrpc.CodeBadRequest},
		{"write empty path", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: py, Content: []byte("hi")}, hostrpc.CodeBadRequest},
		{"write NUL", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: py, Path: "/a\x00b", Content: []byte("hi")}, hostrpc.CodeBadRequest},
		{"write at the path limit", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: py, Path: long[:64], Content: []byte("hi")}, ""},
		{"write over the path limit", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: py, Path: long, Content: []byte("hi")}, hostrpc.CodeBadRequest},
		{"read", hostrpc.OpReadFile, hostrpc.ReadFileRequest{Env: py, Path: "/home/sandbox/a.txt"}, ""},
		{"read cleaned", hostrpc.OpReadFile, hostrpc.ReadFileRequest{Env: py, Path: "/home/sandbox/./b.txt"}, ""},
		{"read missing", hostrpc.OpReadFile, hostrpc.ReadFileRequest{Env: py, Path: "/home/sandbox/none"}, hostrpc.CodeNotFound},
		{"read relative", hostrpc.OpReadFile, hostrpc.ReadFileRequest{Env: py, Path: "a.txt"}, hostrpc.CodeBadRequest},
		{"list home", hostrpc.OpListFiles, hostrpc.ListFilesRequest{Env: py}, ""},
		{"list relative", hostrpc.OpListFiles, hostrpc.ListFilesRequest{Env: py, Path: "sub"}, hostrpc.CodeBadRequest},
		{"list over the path limit", hostrpc.OpListFiles, hostrpc.ListFilesRequest{Env: py, Path: long}, hostrpc.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rCode, rMsg := routerVerdict(t, c.ctx, r, acme, tc)
			hCode, hMsg := hostVerdict(t, nc, tc)
			if rCode != tc.want || hCode != tc.want || rMsg != hMsg {
				t.Errorf("router: %q %q\nhost:   %q %q\nwant %q from both", rCode, rMsg, hCode, hMsg, tc.want)
			}
		})
	}
}

// routerVerdict sends tc through the router's API: the code and message of its tool error.
func routerVerdict(t *testing.T, ctx context.Context, r *router.Router, p router.Principal, tc limitCase) (string, string) {
	t.Helper()
	var err error
	switch q := tc.req.(type) {
	case hostrpc.ExecRequest:
		_, err = r.Exec(ctx, p, q.Env, router.ExecRequest{Code: q.Code, Language: q.Language, Timeout: q.Timeout})
	case hostrpc.ProcessStartRequest:
		_, err = r.StartProcess(ctx, p, q.Env, router.ExecRequest{Code: q.Code, Language: q.Language, Timeout: q.Timeout})
	case hostrpc.ProcessRequest:
		switch tc.op {
		case hostrpc.OpProcessRead:
			_, err = r.ReadProcess(ctx, p, q.Env, q.ProcessID)
		case hostrpc.OpProcessWait:
			_, err = r.WaitProcess(ctx, p, q.Env, q.ProcessID, q.Timeout)
		case hostrpc.OpProcessKill:
			_, err = r.KillProcess(ctx, p, q.Env, q.ProcessID)
		}
	case hostrpc.InstallRequest:
		_, err = r.Install(ctx, p, q.Env, q.Packages)
	case hostrpc.WriteFileRequest:
		_, err = r.WriteFile(ctx, p, q.Env, q.Path, q.Content)
	case hostrpc.ReadFileRequest:
		_, err = r.ReadFile(ctx, p, q.Env, q.Path)
	case hostrpc.ListFilesRequest:
		_, err = r.ListFiles(ctx, p, q.Env, q.Path, q.Recursive)
	default:
		t.Fatalf("no router call for %T", tc.req)
	}
	if err == nil {
		return "", ""
	}
	ue, ok := router.AsUserError(err)
	if !ok {
		t.Fatalf("router: internal error %v", err)
	}
	return ue.Kind, ue.Msg
}

// hostVerdict sends tc straight to the host agent's RPC service: the code and message of its
// error reply.
func hostVerdict(t *testing.T, nc *nats.Conn, tc limitCase) (string, string) {
	t.Helper()
	msg := nats.NewMsg(hostrpc.Subject("real-1", tc.op))
	msg.Header.Set(hostrpc.HeaderPrincipal, "acme/direct")
	var err error
	if msg.Data, err = json.Marshal(tc.req); err != nil {
		t.Fatal(err)
	}
	reply, err := nc.RequestMsg(msg, 10*time.Second)
	if err != nil {
		t.Fatalf("host: %v", err)
	}
	code := reply.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return "", ""
	}
	var he hostrpc.Error
	if err := json.Unmarshal(reply.Data, &he); err != nil {
		t.Fatalf("host error body %q: %v", reply.Data, err)
	}
	if he.Code != code {
		t.Fatalf("host error code %q in the header, %q in the body", code, he.Code)
	}
	return he.Code, he.Message
}
