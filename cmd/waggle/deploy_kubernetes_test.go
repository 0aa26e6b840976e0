// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

const kubernetesDir = "../../deploy/kubernetes"

// k8sObject is one document of a manifest in deploy/kubernetes, decoded into its API type.
type k8sObject struct {
	file, kind, name string
	obj              any
}

// k8sKinds are the API types the manifests may use.
var k8sKinds = map[string]func() any{
	"v1/ConfigMap":                       func() any { return &corev1.ConfigMap{} },
	"v1/Service":                         func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                 func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                func() any { return &appsv1.StatefulSet{} },
	"apps/v1/DaemonSet":                  func() any { return &appsv1.DaemonSet{} },
	"batch/v1/Job":                       func() any { return &batchv1.Job{} },
	"networking.k8s.io/v1/NetworkPolicy": func() any { return &networkingv1.NetworkPolicy{} },
	"policy/v1/PodDisruptionBudget":      func() any { return &policyv1.PodDisruptionBudget{} },
}

// loadManifests decodes every document of every manifest strictly: a field the API type does not
// have (a typo, a wrong level of indentation) or a value of the wrong type fails.
func loadManifests(t *testing.T) []k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(kubernetesDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", kubernetesDir, err)
	}
	var objs []k8sObject
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(raw), "\n---\n") {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			if tm.Kind == "" && strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			newObj, ok := k8sKinds[tm.APIVersion+"/"+tm.Kind]
			if !ok {
				t.Fatalf("%s document %d: kind %s/%s is not one the test knows", f, i+1, tm.APIVersion, tm.Kind)
			}
			obj := newObj()
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: %s: %v", f, tm.Kind, err)
			}
			meta := obj.(metav1.Object)
			if meta.GetName() == "" {
				t.Fatalf("%s: a %s without a name", f, tm.Kind)
			}
			objs = append(objs, k8sObject{file: filepath.Base(f), kind: tm.Kind, name: meta.GetName(), obj: obj})
		}
	}
	return objs
}

// stripComments drops the comment lines of a YAML document.
func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// workload is a pod template with what selects it.
type workload struct {
	k8sObject
	selector *metav1.LabelSelector
	pod      corev1.PodTemplateSpec
}

func workloads(objs []k8sObject) []workload {
	var ws []workload
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			ws = append(ws, workload{o, v.Spec.Selector, v.Spec.Template})
		case *appsv1.StatefulSet:
			ws = append(ws, workload{o, v.Spec.Selector, v.Spec.Template})
		case *appsv1.DaemonSet:
			ws = append(ws, workload{o, v.Spec.Selector, v.Spec.Template})
		case *batchv1.Job:
			ws = append(ws, workload{o, nil, v.Spec.Template})
		}
	}
	return ws
}

// documentedSecrets are the Secrets deploy/README.md tells an operator to create, by name, with
// their keys; a key "*" stands for a directory of files (any key).
func documentedSecrets(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/README.md")
	if err != nil {
		t.Fatal(err)
	}
	create := regexp.MustCompile(`kubectl create secret generic (\S+)(.*)`)
	key := regexp.MustCompile(`--from-(file|literal)=([^\s=]+)(=?)`)
	secrets := map[string][]string{}
	for _, m := range create.FindAllStringSubmatch(string(raw), -1) {
		for _, k := range key.FindAllStringSubmatch(m[2], -1) {
			name := k[2]
			switch {
			case k[3] == "" && strings.HasSuffix(name, "/"):
				name = "*"
			case k[3] == "":
				name = filepath.Base(name)
			}
			secrets[m[1]] = append(secrets[m[1]], name)
		}
	}
	if len(secrets) == 0 {
		t.Fatal("deploy/README.md tells of no `kubectl create secret generic` for the manifests' Secrets")
	}
	return secrets
}

// fieldSamples stand for the pod fields a manifest passes in through the downward API.
var fieldSamples = map[string]string{
	"metadata.name": "waggle-x-0",
	"spec.nodeName": "node1",
	"status.podIP":  "10.0.0.7",
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// TestKubernetesManifests decodes every manifest into the Kubernetes API types and checks what
// the API server would only find out at apply time, or the pods at run time: selectors that
// select their pods, Services that reach a port of a workload, mounts of volumes that exist,
// Secrets that deploy/README.md says how to make (with the keys mounted), ConfigMaps that exist,
// $(VAR) references that are defined, containers that drop privileges, and the command line and
// WAGGLE_* variables of every waggle container against the real flags of the binary.
func TestKubernetesManifests(t *testing.T) {
	objs := loadManifests(t)
	secrets := documentedSecrets(t)
	configMaps := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		if cm, ok := o.obj.(*corev1.ConfigMap); ok {
			configMaps[o.name] = cm
		}
	}
	checkSecret := func(where, name string, keys ...string) {
		t.Helper()
		have, ok := secrets[name]
		if !ok {
			t.Errorf("%s: Secret %s is not among those deploy/README.md creates (%v)", where, name, secrets)
			return
		}
		for _, k := range keys {
			if !slices.Contains(have, k) && !slices.Contains(have, "*") {
				t.Errorf("%s: Secret %s has no key %s in deploy/README.md (%v)", where, name, k, have)
			}
		}
	}
	checkConfigMap := func(where, name string, keys ...string) {
		t.Helper()
		cm, ok := configMaps[name]
		if !ok {
			t.Errorf("%s: ConfigMap %s is in no manifest", where, name)
			return
		}
		for _, k := range keys {
			if _, ok := cm.Data[k]; !ok {
				t.Errorf("%s: ConfigMap %s has no key %s", where, name, k)
			}
		}
	}
	ws := workloads(objs)
	for _, w := range ws {
		where := w.file + ": " + w.kind + " " + w.name
		if w.selector != nil {
			sel, err := metav1.LabelSelectorAsSelector(w.selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.pod.Labels)) {
				t.Errorf("%s: selector %v does not select its pods (labels %v): %v", where, w.selector, w.pod.Labels, err)
			}
		}
		spec := w.pod.Spec
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service account token it never uses (automountServiceAccountToken: false)", where)
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
			switch {
			case v.Secret != nil:
				checkSecret(where, v.Secret.SecretName, itemKeys(v.Secret.Items)...)
			case v.ConfigMap != nil:
				checkConfigMap(where, v.ConfigMap.Name, itemKeys(v.ConfigMap.Items)...)
			case v.Projected != nil:
				for _, src := range v.Projected.Sources {
					if src.Secret != nil {
						checkSecret(where, src.Secret.Name, itemKeys(src.Secret.Items)...)
					}
					if src.ConfigMap != nil {
						checkConfigMap(where, src.ConfigMap.Name, itemKeys(src.ConfigMap.Items)...)
					}
				}
			}
		}
		if ss, ok := w.obj.(*appsv1.StatefulSet); ok {
			for _, pvc := range ss.Spec.VolumeClaimTemplates {
				volumes[pvc.Name] = corev1.Volume{Name: pvc.Name}
			}
		}
		containers := append(slices.Clone(spec.InitContainers), spec.Containers...)
		for _, c := range containers {
			cwhere := where + " container " + c.Name
			checkContainer(t, cwhere, c, volumes, checkSecret)
		}
	}
	for _, o := range objs {
		svc, ok := o.obj.(*corev1.Service)
		if !ok {
			continue
		}
		checkService(t, o.file+": Service "+o.name, svc, ws)
	}
}

// checkContainer checks one container of a workload.
func checkContainer(t *testing.T, where string, c corev1.Container, volumes map[string]corev1.Volume, checkSecret func(where, name string, keys ...string)) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if _, ok := volumes[m.Name]; !ok {
			t.Errorf("%s: mounts volume %s, which the pod does not have", where, m.Name)
		}
	}
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.StrVal != "" && !ports[p.HTTPGet.Port.StrVal] {
			t.Errorf("%s: a probe uses port %q, which the container does not name", where, p.HTTPGet.Port.StrVal)
		}
	}
	sc := c.SecurityContext
	privileged := sc != nil && sc.Privileged != nil && *sc.Privileged
	switch {
	case sc == nil:
		t.Errorf("%s: no securityContext", where)
	case privileged:
		// Only a build step may be; its reason is in the manifest.
		if !strings.Contains(c.Name, "images") {
			t.Errorf("%s: privileged", where)
		}
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
		t.Errorf("%s: does not drop ALL capabilities", where)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: root file system is writable", where)
	}
	// The environment as the container gets it, with sample values for the downward API.
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			v, ok := fieldSamples[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Errorf("%s: %s comes from field %s, which the test has no sample for", where, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			checkSecret(where, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			env[e.Name] = "c2FtcGxlIGdvc3NpcCBrZXkgb2YgMzIgYnl0ZXMhISE=" // base64 of 32 bytes
		}
	}
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = varRef.ReplaceAllStringFunc(a, func(ref string) string {
			name := varRef.FindStringSubmatch(ref)[1]
			v, ok := env[name]
			if !ok {
				t.Errorf("%s: argument %q refers to $(%s), which the container's env does not define (Kubernetes would pass it as it is)", where, a, name)
			}
			return v
		})
	}
	if !strings.HasPrefix(c.Image, "waggle") {
		return
	}
	if len(c.Command) > 0 {
		t.Errorf("%s: overrides the waggle image's entry point (%v): give args only", where, c.Command)
	}
	if err := checkInvocation(args, env); err != nil {
		t.Errorf("%s: %v", where, err)
	}
}

// checkService checks that a Service selects some workload's pods and that its target ports
// are ports of those pods.
func checkService(t *testing.T, where string, svc *corev1.Service, ws []workload) {
	t.Helper()
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var found bool
	for _, w := range ws {
		if len(svc.Spec.Selector) == 0 || !sel.Matches(labels.Set(w.pod.Labels)) {
			continue
		}
		found = true
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.StrVal == "" {
				continue
			}
			if !podHasPort(w.pod.Spec, p.TargetPort.StrVal, p.Protocol) {
				t.Errorf("%s: port %s targets %q (%s), which %s %s does not have", where, p.Name, p.TargetPort.StrVal, p.Protocol, w.kind, w.name)
			}
		}
	}
	if !found {
		t.Errorf("%s: selector %v selects no workload's pods", where, svc.Spec.Selector)
	}
}

func podHasPort(spec corev1.PodSpec, name string, proto corev1.Protocol) bool {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			pp := p.Protocol
			if pp == "" {
				pp = corev1.ProtocolTCP
			}
			if p.Name == name && pp == proto {
				return true
			}
		}
	}
	return false
}

func itemKeys(items []corev1.KeyToPath) []string {
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = it.Key
	}
	return keys
}

// TestKubernetesNetworkPolicies: every pod of waggle is selected by a NetworkPolicy, and every
// policy selects pods, names peers that exist and ports those pods have (a named port that no
// pod has would silently allow nothing).
func TestKubernetesNetworkPolicies(t *testing.T) {
	objs := loadManifests(t)
	ws := workloads(objs)
	selected := map[string]bool{}
	selecting := func(where string, sel *metav1.LabelSelector) []workload {
		t.Helper()
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		var out []workload
		for _, w := range ws {
			if s.Matches(labels.Set(w.pod.Labels)) {
				out = append(out, w)
			}
		}
		return out
	}
	checkPorts := func(where string, pods []workload, ports []networkingv1.NetworkPolicyPort) {
		t.Helper()
		for _, p := range ports {
			if p.Port == nil || p.Port.StrVal == "" {
				continue
			}
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			for _, w := range pods {
				if !podHasPort(w.pod.Spec, p.Port.StrVal, proto) {
					t.Errorf("%s: port %q (%s) is not a port of %s %s", where, p.Port.StrVal, proto, w.kind, w.name)
				}
			}
		}
	}
	for _, o := range objs {
		np, ok := o.obj.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		where := o.file + ": NetworkPolicy " + o.name
		pods := selecting(where, &np.Spec.PodSelector)
		if len(np.Spec.PodSelector.MatchLabels) == 0 || len(pods) == 0 {
			t.Errorf("%s: selects no workload of waggle (%v)", where, np.Spec.PodSelector)
		}
		for _, w := range pods {
			selected[w.kind+" "+w.name] = true
		}
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("%s: policy types %v, want Ingress and Egress", where, np.Spec.PolicyTypes)
		}
		for _, r := range np.Spec.Ingress {
			checkPorts(where+" ingress", pods, r.Ports)
		}
		for _, r := range np.Spec.Egress {
			var peers []workload
			for _, to := range r.To {
				if to.PodSelector != nil && to.NamespaceSelector == nil {
					peers = append(peers, selecting(where, to.PodSelector)...)
					if len(selecting(where, to.PodSelector)) == 0 {
						t.Errorf("%s: egress to %v, which selects no workload", where, to.PodSelector)
					}
				}
			}
			checkPorts(where+" egress", peers, r.Ports)
		}
	}
	for _, w := range ws {
		if !selected[w.kind+" "+w.name] {
			t.Errorf("%s %s (%s) is selected by no NetworkPolicy", w.kind, w.name, w.file)
		}
	}
}

// TestKubernetesRoles checks the shape the deployment promises: a 3-node JetStream StatefulSet
// with its storage and a headless Service, host agents only on labelled KVM nodes with their
// state on the node and their id from it, every role with its own credential.
func TestKubernetesRoles(t *testing.T) {
	objs := loadManifests(t)
	find := func(kind, name string) any {
		for _, o := range objs {
			if o.kind == kind && o.name == name {
				return o.obj
			}
		}
		t.Fatalf("no %s %s in %s", kind, name, kubernetesDir)
		return nil
	}
	nats := find("StatefulSet", "waggle-nats").(*appsv1.StatefulSet)
	if nats.Spec.Replicas == nil || *nats.Spec.Replicas != 3 || len(nats.Spec.VolumeClaimTemplates) == 0 {
		t.Errorf("waggle-nats: want 3 replicas with a volume claim template, have %v, %d templates", nats.Spec.Replicas, len(nats.Spec.VolumeClaimTemplates))
	}
	if svc := find("Service", nats.Spec.ServiceName).(*corev1.Service); svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("waggle-nats: its Service %s is not headless", svc.Name)
	}
	conf := find("ConfigMap", "waggle-nats-config").(*corev1.ConfigMap).Data["nats.conf"]
	for i := range *nats.Spec.Replicas {
		if route := fmt.Sprintf("nats://%s-%d.%s:6222", nats.Name, i, nats.Spec.ServiceName); !strings.Contains(conf, route) {
			t.Errorf("nats.conf lacks the route to pod %d: %s", i, route)
		}
	}

	ha := find("DaemonSet", "waggle-hostagent").(*appsv1.DaemonSet)
	spec := ha.Spec.Template.Spec
	if spec.NodeSelector["waggle.dev/kvm"] != "true" {
		t.Errorf("waggle-hostagent: nodeSelector %v, want waggle.dev/kvm=true", spec.NodeSelector)
	}
	var stateOnHost bool
	for _, v := range spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path == "/var/lib/waggle" {
			stateOnHost = true
		}
	}
	if !stateOnHost {
		t.Error("waggle-hostagent: the VM state is not on the node (hostPath /var/lib/waggle): a new pod would not find its VMs")
	}
	agent := spec.Containers[0]
	if !slices.Contains(agent.Args, "$(NODE_NAME)") {
		t.Errorf("waggle-hostagent: the host id is not the node's name: %v", agent.Args)
	}
	if _, ok := agent.Resources.Limits["devices.kubevirt.io/kvm"]; !ok && (agent.SecurityContext.Privileged == nil || !*agent.SecurityContext.Privileged) {
		t.Error("waggle-hostagent: no /dev/kvm (neither a KVM device resource nor privileged)")
	}

	for name, kind := range map[string]string{"waggle-router": "Deployment", "waggle-projector-p1": "Deployment", "waggle-setup": "Job"} {
		var pod corev1.PodSpec
		switch v := find(kind, name).(type) {
		case *appsv1.Deployment:
			pod = v.Spec.Template.Spec
		case *batchv1.Job:
			pod = v.Spec.Template.Spec
		}
		if !slices.Contains(pod.Containers[0].Args, "--nats-creds") {
			t.Errorf("%s %s: no --nats-creds", kind, name)
		}
	}
}

// TestKubernetesNATSCluster forms the JetStream cluster of deploy/kubernetes/nats.yaml from its
// ConfigMap, three nodes in this process (the pods' addresses moved to loopback ports, the store
// into a temporary directory, the server name from POD_NAME as in the pods) with the trust.conf
// `waggle creds nats-config` prints, and runs `waggle setup --replicas 3` with the admin
// credential on it, as the setup Job does. The settings are those of deploy/nats/nats-1.conf.
func TestKubernetesNATSCluster(t *testing.T) {
	var conf string
	for _, o := range loadManifests(t) {
		if cm, ok := o.obj.(*corev1.ConfigMap); ok && o.name == "waggle-nats-config" {
			conf = cm.Data["nats.conf"]
		}
	}
	dir := t.TempDir()
	creds, trust := natsTrust(t, dir)
	routePorts := freePorts(t, 3)
	var urls []string
	for i := range 3 {
		node := filepath.Join(dir, fmt.Sprintf("waggle-nats-%d", i))
		if err := os.MkdirAll(node, 0o700); err != nil {
			t.Fatal(err)
		}
		repl := []string{"0.0.0.0:4222", "127.0.0.1:-1", "0.0.0.0:8222", "127.0.0.1:-1",
			"0.0.0.0:6222", fmt.Sprintf("127.0.0.1:%d", routePorts[i]), "/data/jetstream", filepath.Join(node, "jetstream")}
		for j, p := range routePorts {
			repl = append(repl, fmt.Sprintf("nats://waggle-nats-%d.waggle-nats:6222", j), fmt.Sprintf("nats://127.0.0.1:%d", p))
		}
		path := filepath.Join(node, "nats.conf")
		writeFile(t, path, strings.NewReplacer(repl...).Replace(conf))
		// The pod's working directory is its volume, where ./jwt lands.
		writeFile(t, filepath.Join(node, "trust.conf"), strings.Replace(trust, `dir: "./jwt"`, `dir: "`+filepath.Join(node, "jwt")+`"`, 1))
		t.Setenv("POD_NAME", fmt.Sprintf("waggle-nats-%d", i))
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("nats-server cannot read the ConfigMap's nats.conf: %v", err)
		}
		if want := fmt.Sprintf("waggle-nats-%d", i); opts.ServerName != want {
			t.Fatalf("server name %q, want %q from POD_NAME", opts.ServerName, want)
		}
		if i == 0 {
			checkSameNATSSettings(t, opts, trust)
		}
		urls = append(urls, startNATSServer(t, opts).ClientURL())
	}
	url := strings.Join(urls, ",")
	// Like the Job: retry until the cluster has elected its meta leader.
	var out string
	var err error
	deadline := time.Now().Add(45 * time.Second)
	for {
		out, err = waggle(t, "setup", "--replicas", "3", "--nats-url", url, "--nats-creds", filepath.Join(creds, "admin.creds"))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil || !strings.Contains(out, "3 replicas") {
		t.Fatalf("waggle setup on the cluster: %v: %s", err, out)
	}
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected to the cluster")
	}
}

// checkSameNATSSettings compares the Kubernetes node's settings with deploy/nats/nats-1.conf's.
func checkSameNATSSettings(t *testing.T, k8s *server.Options, trust string) {
	t.Helper()
	dir := t.TempDir()
	raw, err := os.ReadFile("../../deploy/nats/nats-1.conf")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "nats.conf"), string(raw))
	writeFile(t, filepath.Join(dir, "trust.conf"), trust)
	ref, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what      string
		k8s, conf any
	}{
		{"max_payload", k8s.MaxPayload, ref.MaxPayload},
		{"max_control_line", k8s.MaxControlLine, ref.MaxControlLine},
		{"jetstream", k8s.JetStream, ref.JetStream},
		{"sync_interval always", k8s.SyncAlways, ref.SyncAlways},
		{"cluster name", k8s.Cluster.Name, ref.Cluster.Name},
		{"route port", k8s.Cluster.Port != 0, ref.Cluster.Port != 0},
		{"routes", len(k8s.Routes), len(ref.Routes)},
		{"operator", len(k8s.TrustedOperators), len(ref.TrustedOperators)},
		{"system account", k8s.SystemAccount, ref.SystemAccount},
	} {
		if c.k8s != c.conf {
			t.Errorf("%s: Kubernetes node %v, deploy/nats/nats-1.conf %v", c.what, c.k8s, c.conf)
		}
	}
}
