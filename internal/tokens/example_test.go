package tokens_test

import (
	"fmt"

	"github.com/mcpgate/mcpgate/internal/tokens"
)

func Example() {
	for _, name := range []string{tokens.O200K, tokens.CL100K, tokens.Bytes4} {
		c, err := tokens.New(name)
		if err != nil {
			panic(err)
		}
		fmt.Println(name, c.Count("tiktoken is great!"))
	}
	// Output:
	// o200k_base 6
	// cl100k_base 6
	// bytes4 5
}
