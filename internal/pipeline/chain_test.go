package pipeline_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// TestDirectionOrder: a client message meets the stages in Order, a server
// message in reverse, so the stage nearest the client is the same both ways,
// and each direction uses its own interceptor.
func TestDirectionOrder(t *testing.T) {
	tr := &trace{}
	var stages []pipeline.Stage
	for _, n := range []string{"policy", "audit", "limits"} {
		stages = append(stages, pipeline.Stage{Name: n,
			ClientToServer: tr.recording("c2s:" + n),
			ServerToClient: tr.recording("s2c:" + n)})
	}
	ch, err := pipeline.Build("r", tr.terminal(nil), tr.terminal(nil), stages)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.ClientToServer(context.Background(), request(t)); err != nil {
		t.Fatal(err)
	}
	want := []string{"c2s:audit>", "c2s:limits>", "c2s:policy>", "terminal", "<c2s:policy", "<c2s:limits", "<c2s:audit"}
	if diff := cmp.Diff(want, tr.get()); diff != "" {
		t.Errorf("client→server (-want +got):\n%s", diff)
	}
	tr.calls = nil
	if _, err := ch.ServerToClient(context.Background(), request(t)); err != nil {
		t.Fatal(err)
	}
	want = []string{"s2c:policy>", "s2c:limits>", "s2c:audit>", "terminal", "<s2c:audit", "<s2c:limits", "<s2c:policy"}
	if diff := cmp.Diff(want, tr.get()); diff != "" {
		t.Errorf("server→client (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"audit", "limits", "policy"}, ch.Stages()); diff != "" {
		t.Errorf("Stages (-want +got):\n%s", diff)
	}
}

// TestOneDirectionOnly: a stage with only one direction's interceptor is
// absent from the other direction; Interceptor serves both.
func TestOneDirectionOnly(t *testing.T) {
	tr := &trace{}
	ch, err := pipeline.Build("r", tr.terminal(nil), tr.terminal(nil), []pipeline.Stage{
		{Name: "limits", ClientToServer: tr.recording("limits")},
		{Name: "logging", Interceptor: tr.recording("logging")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.ServerToClient(context.Background(), request(t)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"logging>", "terminal", "<logging"}, tr.get()); diff != "" {
		t.Errorf("server→client (-want +got):\n%s", diff)
	}
}

func TestBuildRefusesRepeatedStage(t *testing.T) {
	pass := func(next core.Handler) core.Handler { return next }
	_, err := pipeline.Build("r", nil, nil, []pipeline.Stage{{Name: "audit", Interceptor: pass}, {Name: "audit", Interceptor: pass}})
	if err == nil || !strings.Contains(err.Error(), `"audit"`) {
		t.Fatalf("err = %v, want one naming the repeated stage", err)
	}
}

// counter is a stage's per-session state in these tests.
type counter struct{ n atomic.Int64 }

// lifecycle records what a stateful stage is told.
type lifecycle struct {
	mu      sync.Mutex
	made    []string // "name(prev)"
	ended   []string // "name:reason"
	closed  int
	observe []string
}

func (l *lifecycle) stage(name string) pipeline.Stage {
	return pipeline.Stage{
		Name: name,
		ClientToServer: func(next core.Handler) core.Handler {
			return func(ctx context.Context, m *core.Message) (*core.Message, error) {
				pipeline.StateOf(m, name).(*counter).n.Add(1)
				return next(ctx, m)
			}
		},
		Session: func(info *core.SessionInfo, prev any) any {
			l.mu.Lock()
			defer l.mu.Unlock()
			if prev != nil {
				l.made = append(l.made, name+"(prev)")
				return prev
			}
			l.made = append(l.made, name)
			return new(counter)
		},
		End: func(info *core.SessionInfo, state any, reason string) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.ended = append(l.ended, name+":"+reason)
		},
		Observe: func(_ context.Context, ev *pipeline.Event) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.observe = append(l.observe, name+":"+ev.Kind.String()+":"+ev.Route)
		},
		Close: func() error {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.closed++
			return errors.New(name + " failed to close")
		},
	}
}

func (l *lifecycle) get() (made, ended, observe []string, closed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.made), slices.Clone(l.ended), slices.Clone(l.observe), l.closed
}

func echo(_ context.Context, m *core.Message) (*core.Message, error) {
	return core.ResultResponse(m.ID, []byte(`{}`)), nil
}

// TestSessionState: the state is made once per session however many
// goroutines enter at once, reaches the interceptors, moves to a new chain
// on reload (taken over by the stage of the same name, ended for the stage
// the new chain lacks), and ends with the session.
func TestSessionState(t *testing.T) {
	l := &lifecycle{}
	old, err := pipeline.Build("r", echo, echo, []pipeline.Stage{l.stage("limits"), l.stage("policy")})
	if err != nil {
		t.Fatal(err)
	}
	info := &core.SessionInfo{ID: "s", Route: "r", Stages: new(core.StageHolder)}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			old.Enter(info)
			m := request(t)
			m.Session = info
			if _, err := old.ClientToServer(context.Background(), m); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	m := request(t)
	m.Session = info
	if got := pipeline.StateOf(m, "limits").(*counter).n.Load(); got != 20 {
		t.Errorf("limits counted %d calls, want 20", got)
	}
	made, _, _, _ := l.get()
	if diff := cmp.Diff([]string{"limits", "policy"}, made); diff != "" {
		t.Errorf("states made (-want +got):\n%s", diff)
	}

	// A reload: limits stays (and keeps its count), policy goes, audit comes.
	next, err := pipeline.Build("r", echo, echo, []pipeline.Stage{l.stage("limits"), l.stage("audit")})
	if err != nil {
		t.Fatal(err)
	}
	next.Enter(info)
	if got := pipeline.StateOf(m, "limits").(*counter).n.Load(); got != 20 {
		t.Errorf("after the move limits holds %d, want the 20 it had", got)
	}
	made, ended, _, _ := l.get()
	if diff := cmp.Diff([]string{"limits", "policy", "audit", "limits(prev)"}, made); diff != "" {
		t.Errorf("states made (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"policy:moved"}, ended); diff != "" {
		t.Errorf("states ended by the move (-want +got):\n%s", diff)
	}

	next.Leave(info, "deleted")
	next.Enter(info) // late: nothing is made for an ended session
	made, ended, _, _ = l.get()
	if diff := cmp.Diff([]string{"policy:moved", "audit:deleted", "limits:deleted"}, ended); diff != "" {
		t.Errorf("states ended (-want +got):\n%s", diff)
	}
	if len(made) != 4 {
		t.Errorf("Enter after Leave made state: %v", made)
	}
	if pipeline.StateOf(m, "limits") != nil {
		t.Error("state still reachable after Leave")
	}
}

// TestObserveAndClose: events reach every observer in Order with the route
// filled in; Close runs each stage's Close once and joins their errors.
func TestObserveAndClose(t *testing.T) {
	l := &lifecycle{}
	ch, err := pipeline.Build("web", echo, echo, []pipeline.Stage{l.stage("policy"), l.stage("audit")})
	if err != nil {
		t.Fatal(err)
	}
	if !ch.Observing() {
		t.Fatal("Observing() = false with two observers")
	}
	ch.Observe(context.Background(), &pipeline.Event{Kind: pipeline.Refused})
	_, _, observed, _ := l.get()
	if diff := cmp.Diff([]string{"audit:refused:web", "policy:refused:web"}, observed); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
	err1, err2 := ch.Close(), ch.Close()
	if _, _, _, closed := l.get(); closed != 2 {
		t.Errorf("%d Close calls, want one per stage", closed)
	}
	if err1 == nil || !strings.Contains(err1.Error(), "audit failed") || !strings.Contains(err1.Error(), "policy failed") || err2 != err1 {
		t.Errorf("Close = %v, %v; want both stages' errors, the same each time", err1, err2)
	}
	plain, err := pipeline.Build("web", echo, echo, nil)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Observing() {
		t.Error("Observing() = true with no observer")
	}
}

// TestCheckOf: refusals are classified by status and code.
func TestCheckOf(t *testing.T) {
	for _, tt := range []struct {
		e    *core.Error
		want string
	}{
		{core.NewError(core.CodeInvalidRequest, "x").WithStatus(403), pipeline.CheckForbidden},
		{core.NewError(core.CodeInvalidRequest, "x").WithStatus(404), pipeline.CheckRoute},
		{core.NewError(core.CodeSessionNotFound, "x").WithStatus(404), pipeline.CheckSession},
		{core.NewError(core.CodeInvalidRequest, "x").WithStatus(413), pipeline.CheckSize},
		{core.NewError(core.CodeParseError, "x"), pipeline.CheckParse},
		{core.NewError(core.CodeRateLimited, "x").WithStatus(429), pipeline.CheckRate},
		{core.NewError(core.CodeSessionCap, "x").WithStatus(503), pipeline.CheckCap},
		{core.NewError(core.CodeInvalidRequest, "x").WithStatus(401), pipeline.CheckAuth},
		{core.NewError(core.CodeInvalidParams, "x"), pipeline.CheckProtocol},
		{&core.Error{Code: core.CodeSessionNotFound, Message: "x", Status: 404, Err: pipeline.ErrHijack}, pipeline.CheckHijack},
	} {
		if got := pipeline.CheckOf(tt.e); got != tt.want {
			t.Errorf("CheckOf(%d/%d) = %q, want %q", tt.e.HTTPStatus(), tt.e.Code, got, tt.want)
		}
	}
}

// TestSteadyStateAllocatesNothing: once a session's state is made, entering
// and passing a chain of pass-through stages costs no allocation.
func TestSteadyStateAllocatesNothing(t *testing.T) {
	l := &lifecycle{}
	resp := core.ResultResponse("7", []byte(`{}`))
	terminal := func(context.Context, *core.Message) (*core.Message, error) { return resp, nil }
	ch, err := pipeline.Build("r", terminal, terminal, []pipeline.Stage{l.stage("limits")})
	if err != nil {
		t.Fatal(err)
	}
	info := &core.SessionInfo{Stages: new(core.StageHolder)}
	m := request(t)
	m.Session = info
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		ch.Enter(info)
		_, _ = ch.ClientToServer(ctx, m)
	}); n != 0 {
		t.Errorf("%v allocations per message, want 0", n)
	}
}

// TestReporter: what a stage reports reaches the observers of the stages
// the reporter was bound to, in Order, with the route and time filled in;
// before Bind, nobody.
func TestReporter(t *testing.T) {
	var seen []string
	obs := func(name string) func(context.Context, *pipeline.Event) {
		return func(_ context.Context, ev *pipeline.Event) {
			seen = append(seen, name+":"+ev.Kind.String()+":"+ev.Route+":"+ev.Policy)
			if ev.Time.IsZero() {
				t.Error("no time")
			}
		}
	}
	rep := pipeline.NewReporter("r")
	env := pipeline.Env{Route: "r", Report: rep.Report}
	env.Report(context.Background(), &pipeline.Event{Kind: pipeline.Decision, Policy: "early"})
	rep.Bind([]pipeline.Stage{{Name: "policy", Observe: obs("policy")}, {Name: "limits"}, {Name: "audit", Observe: obs("audit")}})
	env.Report(context.Background(), &pipeline.Event{Kind: pipeline.Decision, Stage: "policy", Policy: "p1", Action: "deny"})
	if d := cmp.Diff([]string{"audit:decision:r:p1", "policy:decision:r:p1"}, seen); d != "" {
		t.Fatalf("observers (-want +got):\n%s", d)
	}
}
