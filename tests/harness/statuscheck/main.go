// statuscheck: how GitOps tools judge a Kubernetes object, for the mlrollout tests.
//
//	statuscheck kstatus [FILE|-]            kstatus.Compute (sigs.k8s.io/cli-utils), as JSON
//	statuscheck health SCRIPT [FILE|-]      an Argo CD health.lua on the object, as JSON
//	statuscheck health-test DIR             every case of DIR/health_test.yaml against DIR/health.lua
//
// Objects are YAML or JSON. The Lua runs the way Argo CD runs a health customization
// (util/lua in argo-cd): gopher-lua, only the package, base and table libraries (no string
// library unless an admin sets useOpenLibs), the object as the global `obj` (built like Argo's
// decodeValue), a one-second deadline, and the returned table's status checked against Argo's
// health codes. health-test compares status and message of every case and exits 1 on any
// difference.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// HealthStatus is Argo CD's health.HealthStatus as a health.lua returns it.
type HealthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// healthTest is Argo CD's health_test.yaml.
type healthTest struct {
	Tests []struct {
		HealthStatus HealthStatus `json:"healthStatus"`
		InputPath    string       `json:"inputPath"`
	} `json:"tests"`
}

// caseResult is one health_test.yaml case as health-test reports it.
type caseResult struct {
	InputPath string        `json:"inputPath"`
	Want      HealthStatus  `json:"want"`
	Got       *HealthStatus `json:"got,omitempty"`
	Error     string        `json:"error,omitempty"`
	Passed    bool          `json:"passed"`
}

var healthCodes = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "statuscheck:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: statuscheck kstatus [FILE|-] | health SCRIPT [FILE|-] | health-test DIR")
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	switch args[0] {
	case "kstatus":
		obj, err := readObject(optional(args, 1))
		if err != nil {
			return err
		}
		res, err := status.Compute(obj)
		if err != nil {
			return fmt.Errorf("kstatus: %w", err)
		}
		return enc.Encode(res)
	case "health":
		if len(args) < 2 {
			return errors.New("health needs SCRIPT")
		}
		script, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		obj, err := readObject(optional(args, 2))
		if err != nil {
			return err
		}
		hs, err := runHealth(obj, string(script))
		if err != nil {
			return err
		}
		return enc.Encode(hs)
	case "health-test":
		if len(args) < 2 {
			return errors.New("health-test needs DIR")
		}
		results, err := runHealthTest(args[1])
		if err != nil {
			return err
		}
		if err := enc.Encode(results); err != nil {
			return err
		}
		failed := 0
		for _, r := range results {
			if !r.Passed {
				failed++
			}
		}
		if failed > 0 {
			return fmt.Errorf("%d of %d health_test.yaml cases failed", failed, len(results))
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func optional(args []string, i int) string {
	if len(args) > i {
		return args[i]
	}
	return "-"
}

// readObject reads YAML or JSON into an Unstructured the way the API machinery decodes it
// (integers stay int64, as in a live object).
func readObject(path string) (*unstructured.Unstructured, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(js); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obj, nil
}

func runHealthTest(dir string) ([]caseResult, error) {
	script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
	if err != nil {
		return nil, err
	}
	var tests healthTest
	if err := yaml.UnmarshalStrict(raw, &tests); err != nil {
		return nil, fmt.Errorf("health_test.yaml: %w", err)
	}
	if len(tests.Tests) == 0 {
		return nil, errors.New("health_test.yaml has no tests")
	}
	results := make([]caseResult, 0, len(tests.Tests))
	for _, tc := range tests.Tests {
		r := caseResult{InputPath: tc.InputPath, Want: tc.HealthStatus}
		obj, err := readObject(filepath.Join(dir, tc.InputPath))
		if err == nil {
			r.Got, err = runHealth(obj, string(script))
		}
		if err != nil {
			r.Error = err.Error()
		} else {
			r.Passed = *r.Got == tc.HealthStatus
		}
		results = append(results, r)
	}
	return results, nil
}

// runHealth runs a health.lua as Argo CD's lua.VM.ExecuteHealthLua does.
func runHealth(obj *unstructured.Unstructured, script string) (*HealthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return nil, fmt.Errorf("health.lua: %w", err)
	}
	ret := l.Get(-1)
	switch ret.Type() {
	case lua.LTNil:
		return &HealthStatus{}, nil
	case lua.LTTable:
	default:
		return nil, fmt.Errorf("health.lua returned %s, not a table", ret.Type())
	}
	tbl := ret.(*lua.LTable)
	hs := &HealthStatus{}
	for key, dst := range map[string]*string{"status": &hs.Status, "message": &hs.Message} {
		switch v := tbl.RawGetString(key).(type) {
		case lua.LString:
			*dst = string(v)
		case *lua.LNilType:
		default:
			return nil, fmt.Errorf("health.lua: hs.%s is a %s, not a string", key, v.Type())
		}
	}
	if !healthCodes[hs.Status] {
		return &HealthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return hs, nil
}

// decodeValue is Argo CD's: maps become tables, lists 1-based arrays, numbers LNumber.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetString(key, decodeValue(l, item))
		}
		return t
	case []any:
		t := l.CreateTable(len(v), 0)
		for i, item := range v {
			t.RawSetInt(i+1, decodeValue(l, item))
		}
		return t
	default:
		return lua.LNil
	}
}
