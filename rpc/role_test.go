package rpc

import (
	"crypto/x509"
	"errors"
	"math/big"
	"net/url"
	"testing"
)

func TestRoleOf(t *testing.T) {
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name     string
		uris     []*url.URL
		wantRole Role // "" when forbidden
	}{
		{"master", []*url.URL{RoleMaster.URI()}, RoleMaster},
		{"observer among other names", []*url.URL{uri("spiffe://cluster/x"), RoleObserver.URI()}, RoleObserver},
		{"node", []*url.URL{uri("noderpc:role:node")}, RoleNode},
		{"no role", []*url.URL{uri("https://example.com/")}, ""},
		{"two roles", []*url.URL{RoleObserver.URI(), RoleMaster.URI()}, ""},
		{"unknown role", []*url.URL{uri("noderpc:role:admin")}, ""},
		{"other noderpc name", []*url.URL{uri("noderpc:group:master")}, ""},
	}
	for _, tt := range tests {
		cert := &x509.Certificate{URIs: tt.uris, SerialNumber: big.NewInt(7)}
		got, err := RoleOf(cert)
		if tt.wantRole == "" {
			if !errors.Is(err, ErrForbidden) {
				t.Errorf("%s: RoleOf = %q, %v; want a forbidden error", tt.name, got, err)
			}
			continue
		}
		if err != nil || got != tt.wantRole {
			t.Errorf("%s: RoleOf = %q, %v; want %q", tt.name, got, err, tt.wantRole)
		}
	}
	if got := RoleMaster.URI().String(); got != "noderpc:role:master" {
		t.Errorf("RoleMaster.URI() = %q, want noderpc:role:master", got)
	}
}
