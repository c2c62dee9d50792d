package masterd

import (
	"testing"

	"github.com/noderpc/noderpc/master/nodetest"
)

func TestMain(m *testing.M) { nodetest.Main(m) }
