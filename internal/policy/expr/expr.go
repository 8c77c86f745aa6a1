// Package expr is the CEL environment of policy rules: the variables a
// rule may read and the compilation of a rule into a program. It is its
// own package so that configuration validation compiles rules exactly as
// the policy stage does.
package expr

import (
	"fmt"
	"sync"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
)

// The variables a rule reads. For a message that is not a tools/call,
// tool is "" and args is empty; name is the tool or prompt name, or the
// resource URI, of any request that names one.
const (
	VarTool      = "tool"      // string: the tool of a tools/call
	VarArgs      = "args"      // map: its arguments
	VarMethod    = "method"    // string: the request's method
	VarName      = "name"      // string: the tool, prompt or resource URI
	VarPrincipal = "principal" // string: the session's principal
	VarTenant    = "tenant"    // string: its tenant ("" for none)
	VarGroups    = "groups"    // list of strings: its groups
	VarClaims    = "claims"    // map: the credential's claims
	VarRoute     = "route"     // string: the route's name
)

var (
	envOnce sync.Once
	env     *cel.Env
	envErr  error
)

// Env is the rules' environment.
func Env() (*cel.Env, error) {
	envOnce.Do(func() {
		env, envErr = cel.NewEnv(
			cel.Variable(VarTool, cel.StringType),
			cel.Variable(VarArgs, cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable(VarMethod, cel.StringType),
			cel.Variable(VarName, cel.StringType),
			cel.Variable(VarPrincipal, cel.StringType),
			cel.Variable(VarTenant, cel.StringType),
			cel.Variable(VarGroups, cel.ListType(cel.StringType)),
			cel.Variable(VarClaims, cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable(VarRoute, cel.StringType),
		)
	})
	return env, envErr
}

// MaxCost bounds what one evaluation of a rule may cost (CEL's cost
// units): a rule that would loop over huge arguments is stopped and
// counts as failed.
const MaxCost = 1_000_000

// Rule is a compiled rule.
type Rule struct {
	Program cel.Program
	// UsesArgs: the rule reads args (so the arguments must be decoded).
	UsesArgs bool
}

// Compile type-checks a rule (it must be a bool) and makes its program.
func Compile(src string) (*Rule, error) {
	e, err := Env()
	if err != nil {
		return nil, err
	}
	if len(src) > 10_000 {
		return nil, fmt.Errorf("the expression is %d bytes long; at most 10000", len(src))
	}
	ast, iss := e.Compile(src)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("the expression is a %s; a rule must be a bool (true denies)", ast.OutputType())
	}
	// Without a comprehension (all, exists, map, filter) a rule's cost is
	// bounded by its own size; with one it is bounded by MaxCost, which
	// costs a tracker on every evaluation.
	loops := false
	celast.PostOrderVisit(ast.NativeRep().Expr(), celast.NewExprVisitor(func(x celast.Expr) {
		loops = loops || x.Kind() == celast.ComprehensionKind
	}))
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if loops {
		opts = append(opts, cel.CostLimit(MaxCost))
	}
	prg, err := e.Program(ast, opts...)
	if err != nil {
		return nil, err
	}
	uses := false
	for _, ref := range ast.NativeRep().ReferenceMap() {
		if ref.Name == VarArgs {
			uses = true
		}
	}
	return &Rule{Program: prg, UsesArgs: uses}, nil
}
