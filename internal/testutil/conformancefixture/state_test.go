package conformancefixture

import (
	"errors"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

func TestRequestStateIntegrity(t *testing.T) {
	f := &fixture{stateKey: []byte("0123456789abcdef0123456789abcdef")}
	other := &fixture{stateKey: []byte("fedcba9876543210fedcba9876543210")}
	sealed := f.sealState(requestState{Tool: toolIRMultiRound, Round: 2, Name: "Ada"})

	st, err := f.openState(sealed, toolIRMultiRound)
	if err != nil || st.Round != 2 || st.Name != "Ada" {
		t.Fatalf("openState = %+v, %v", st, err)
	}

	for name, tc := range map[string]struct {
		f     *fixture
		state string
		tool  string
	}{
		"tampered suffix": {f, sealed + "-TAMPERED", toolIRMultiRound},
		"edited body":     {f, "x" + sealed, toolIRMultiRound},
		"no mac":          {f, strings.Split(sealed, ".")[0], toolIRMultiRound},
		"other key":       {other, sealed, toolIRMultiRound},
		"other tool":      {f, sealed, toolIRTamperedState},
		"garbage":         {f, "hello", toolIRMultiRound},
	} {
		_, err := tc.f.openState(tc.state, tc.tool)
		var rpcErr *jsonrpc.Error
		if !errors.As(err, &rpcErr) || rpcErr.Code != jsonrpc.CodeInvalidParams {
			t.Errorf("%s: openState error = %v, want invalid params", name, err)
		}
	}
}
