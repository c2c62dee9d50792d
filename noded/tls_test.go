package noded

import (
	"testing"

	"github.com/noderpc/noderpc/rpc"
)

func TestMayCall(t *testing.T) {
	paths := []string{rpc.PathStartFunction, rpc.PathWaitForFunction, rpc.PathCancelFunction, rpc.PathReleaseFunction, rpc.PathListFunctions, rpc.PathListCalls, rpc.PathVersion, PathMetrics, "/Nope"}
	reads := map[string]bool{rpc.PathWaitForFunction: true, rpc.PathListFunctions: true, rpc.PathListCalls: true, rpc.PathVersion: true, PathMetrics: true}
	for _, role := range []rpc.Role{rpc.RoleMaster, rpc.RoleObserver, rpc.RoleNode, "", "admin"} {
		for _, p := range paths {
			// No role may call a procedure that does not exist.
			want := p != "/Nope" && (role == rpc.RoleMaster || role == rpc.RoleObserver && reads[p])
			if got := mayCall(role, p); got != want {
				t.Errorf("mayCall(%q, %s) = %v, want %v", role, p, got, want)
			}
		}
	}
}
