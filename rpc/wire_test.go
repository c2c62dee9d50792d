package rpc

import "github.com/noderpc/noderpc/rpc/wire"

// maxDepth is the strict decoder's nesting bound, which the tests probe.
const maxDepth = wire.MaxDepth

// linearKeys is package wire's count of keys past which an object's
// duplicates are found in a map; the tests probe both sides of it.
const linearKeys = 16
