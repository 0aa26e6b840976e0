// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"encoding/json"
	"sync"

	"github.com/waggle-dev/waggle/events/hostrpc"
)

// callSlots bounds the RPCs in progress on a host: at most host in all and perEnv for one
// environment, so that one environment (one tenant) cannot take every slot of its host. A call
// over either bound is refused at once with hostrpc.CodeBusy; it never waits.
type callSlots struct {
	hostID       string
	host, perEnv int

	mu    sync.Mutex
	total int
	byEnv map[string]int
}

func newCallSlots(hostID string, host, perEnv int) *callSlots {
	return &callSlots{hostID: hostID, host: host, perEnv: perEnv, byEnv: map[string]int{}}
}

// acquire takes a slot for a call about env; release gives it back.
func (s *callSlots) acquire(env string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.byEnv[env] >= s.perEnv:
		return nil, rpcErrorf(hostrpc.CodeBusy, "environment %s is busy: it has %d calls in progress, the most one environment may have at once",
			env, s.byEnv[env])
	case s.total >= s.host:
		return nil, rpcErrorf(hostrpc.CodeBusy, "host %s is busy: it has %d calls in progress, the most it serves at once", s.hostID, s.total)
	}
	s.total++
	s.byEnv[env]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.total--
			if s.byEnv[env]--; s.byEnv[env] == 0 {
				delete(s.byEnv, env)
			}
		})
	}, nil
}

// requestEnv is the environment id a request body names ("" when it names none); the request
// is checked in full later.
func requestEnv(data []byte) string {
	var body struct {
		Env string `json:"env"`
	}
	_ = json.Unmarshal(data, &body)
	return body.Env
}
