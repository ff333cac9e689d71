// Command kglue-gitops-check judges kglue objects the way GitOps tools do, with their own code:
//
//	kglue-gitops-check argocd-health --script FILE.lua OBJECT.json...
//	kglue-gitops-check argocd-health --argocd-cm CONFIGMAP.yaml OBJECT.json...
//	kglue-gitops-check kstatus OBJECT.json...
//
// argocd-health runs a health check the way the Argo CD application controller does: through
// gitops-engine's health.GetResourceHealth with Argo CD's Lua runtime (util/lua: gopher-lua with
// its sandbox of base, table, package and a safe os library, a one-second timeout, the object as
// the global `obj`, a returned table read as {status, message}). With --script the script is
// registered as the health override of each object's group and kind; with --argocd-cm the
// overrides are read from an argocd-cm ConfigMap by Argo CD's own settings manager, so the
// `resource.customizations.health.<group>_<Kind>` keys are parsed exactly as Argo CD parses them.
//
// kstatus computes sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, the library Flux's health
// checks (kustomize-controller `wait`/`healthChecks`) and `kubectl`-style waiters use.
//
// Each object (a JSON file holding one Kubernetes object, or a List of them) gives one JSON line:
// {"object":"Kind/name","status":"...","message":"..."}. The exit code is 0 when every object was
// judged (whatever the status), 1 when a file cannot be read or a script fails, 2 on bad usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	appv1 "github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/argo-cd/v3/util/settings"
	"github.com/argoproj/gitops-engine/pkg/health"
	log "github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

const usage = `usage:
  kglue-gitops-check argocd-health --script FILE.lua OBJECT.json...
  kglue-gitops-check argocd-health --argocd-cm CONFIGMAP.yaml OBJECT.json...
  kglue-gitops-check kstatus OBJECT.json...
`

// verdict is one output line.
type verdict struct {
	Object  string `json:"object"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// Argo CD's settings manager logs its informers at info level; only problems matter here.
	log.SetLevel(log.WarnLevel)
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	flags := flag.NewFlagSet(args[0], flag.ContinueOnError)
	flags.SetOutput(stderr)
	script := flags.String("script", "", "a Lua health script (argocd-health)")
	configMap := flags.String("argocd-cm", "", "an argocd-cm ConfigMap as YAML or JSON (argocd-health)")
	if err := flags.Parse(args[1:]); err != nil {
		return 2
	}
	files := flags.Args()
	if len(files) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}

	var judge func(*unstructured.Unstructured) (verdict, error)
	switch args[0] {
	case "argocd-health":
		overrides, err := argoOverrides(*script, *configMap)
		if err != nil {
			fmt.Fprintf(stderr, "kglue-gitops-check: %v\n", err)
			return 2
		}
		judge = func(obj *unstructured.Unstructured) (verdict, error) {
			result, err := health.GetResourceHealth(obj, overrides(obj))
			if err != nil {
				return verdict{}, err
			}
			if result == nil {
				// No health check applies: Argo CD shows no health for the resource.
				return verdict{Status: "", Message: "no health check for this kind"}, nil
			}
			return verdict{Status: string(result.Status), Message: result.Message}, nil
		}
	case "kstatus":
		if *script != "" || *configMap != "" {
			fmt.Fprint(stderr, usage)
			return 2
		}
		judge = func(obj *unstructured.Unstructured) (verdict, error) {
			result, err := status.Compute(obj)
			if err != nil {
				return verdict{}, err
			}
			return verdict{Status: result.Status.String(), Message: result.Message}, nil
		}
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}

	out := json.NewEncoder(stdout)
	failed := false
	for _, file := range files {
		objects, err := readObjects(file)
		if err != nil {
			fmt.Fprintf(stderr, "kglue-gitops-check: %s: %v\n", file, err)
			failed = true
			continue
		}
		for _, obj := range objects {
			v, err := judge(obj)
			if err != nil {
				fmt.Fprintf(stderr, "kglue-gitops-check: %s: %s/%s: %v\n", file, obj.GetKind(), obj.GetName(), err)
				failed = true
				continue
			}
			v.Object = obj.GetKind() + "/" + obj.GetName()
			if err := out.Encode(v); err != nil {
				fmt.Fprintf(stderr, "kglue-gitops-check: %v\n", err)
				return 1
			}
		}
	}
	if failed {
		return 1
	}
	return 0
}

// argoOverrides returns, per object, the resource overrides Argo CD would use for it.
func argoOverrides(script, configMap string) (func(*unstructured.Unstructured) health.HealthOverride, error) {
	switch {
	case script != "" && configMap == "":
		body, err := os.ReadFile(script)
		if err != nil {
			return nil, err
		}
		return func(obj *unstructured.Unstructured) health.HealthOverride {
			key := lua.GetConfigMapKey(obj.GroupVersionKind())
			return lua.ResourceHealthOverrides{key: appv1.ResourceOverride{HealthLua: string(body)}}
		}, nil
	case configMap != "" && script == "":
		overrides, err := overridesFromConfigMap(configMap)
		if err != nil {
			return nil, err
		}
		return func(*unstructured.Unstructured) health.HealthOverride {
			return lua.ResourceHealthOverrides(overrides)
		}, nil
	default:
		return nil, errors.New("argocd-health needs exactly one of --script and --argocd-cm")
	}
}

// overridesFromConfigMap reads the resource overrides from an argocd-cm ConfigMap with Argo CD's
// settings manager, over a fake clientset holding only that ConfigMap.
func overridesFromConfigMap(file string) (map[string]appv1.ResourceOverride, error) {
	body, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(body, &cm); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if cm.Name != "argocd-cm" {
		return nil, fmt.Errorf("%s: the ConfigMap is named %q; Argo CD reads argocd-cm", file, cm.Name)
	}
	const namespace = "argocd"
	cm.Namespace = namespace
	// Argo CD only sees ConfigMaps with this label; an install's argocd-cm carries it.
	if cm.Labels["app.kubernetes.io/part-of"] != "argocd" {
		return nil, fmt.Errorf("%s: argocd-cm lacks the label app.kubernetes.io/part-of: argocd, so Argo CD would not read it", file)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: "argocd-secret", Namespace: namespace,
		Labels: map[string]string{"app.kubernetes.io/part-of": "argocd"},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	manager := settings.NewSettingsManager(ctx, fake.NewClientset(&cm, secret), namespace)
	return manager.GetResourceOverrides()
}

// readObjects reads one object or a List of objects from a JSON (or YAML) file.
func readObjects(file string) ([]*unstructured.Unstructured, error) {
	body, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	body, err = yaml.YAMLToJSON(body)
	if err != nil {
		return nil, err
	}
	// apimachinery's json keeps whole numbers int64, as objects read from the API server have them.
	var object map[string]any
	if err := utiljson.Unmarshal(body, &object); err != nil {
		return nil, err
	}
	if object == nil {
		return nil, errors.New("no object in the file")
	}
	u := &unstructured.Unstructured{Object: object}
	if u.IsList() {
		list, err := u.ToList()
		if err != nil {
			return nil, err
		}
		objects := make([]*unstructured.Unstructured, 0, len(list.Items))
		for i := range list.Items {
			objects = append(objects, &list.Items[i])
		}
		return objects, nil
	}
	if u.GetKind() == "" || u.GetAPIVersion() == "" {
		return nil, errors.New("the object has no apiVersion or kind")
	}
	return []*unstructured.Unstructured{u}, nil
}
