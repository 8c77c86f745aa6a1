package upstream

import "testing"

// TestCalls: a duplicate id is refused; the first call of a token keeps
// it; only the call recorded removes itself; the client count follows.
func TestCalls(t *testing.T) {
	var c Calls[*int]
	a, b, x := new(int), new(int), new(int)
	if !c.Add("1", "tok", true, a) || c.Add("1", "", true, b) {
		t.Fatal("duplicate id accepted, or first refused")
	}
	if !c.Add("2", "tok", false, b) || c.Tokens["tok"] != a || c.Clients != 1 {
		t.Fatalf("token %v, clients %d", c.Tokens["tok"], c.Clients)
	}
	if c.Remove("1", "tok", true, x) {
		t.Fatal("another call removed the pending one")
	}
	if !c.Remove("1", "tok", true, a) || c.Tokens["tok"] != nil || c.Clients != 0 || c.Pending["2"] != b {
		t.Fatalf("after remove: %v %d %v", c.Tokens, c.Clients, c.Pending)
	}
	if c.Remove("1", "tok", true, a) {
		t.Fatal("removed twice")
	}
}
