module example.com/consumer

go 1.26.0

require (
	github.com/mcpgate/mcpgate v0.0.0
	github.com/modelcontextprotocol/go-sdk v1.8.0
)

replace github.com/mcpgate/mcpgate => ../..
