package email

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
)

func TestXOAUTH2Encoding(t *testing.T) {
	c := &xoauth2Client{username: "someone@gmail.com", token: "ya29.abc"}
	mech, ir, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	// The format Google and Microsoft document, byte for byte.
	if mech != "XOAUTH2" || string(ir) != "user=someone@gmail.com\x01auth=Bearer ya29.abc\x01\x01" {
		t.Errorf("Start = %q %q", mech, ir)
	}
	// A refusal comes as a JSON challenge, answered with an empty response.
	resp, err := c.Next([]byte(`{"status":"400"}`))
	if err != nil || len(resp) != 0 || c.serverErr != `{"status":"400"}` {
		t.Errorf("Next = %q, %v (kept %q)", resp, err, c.serverErr)
	}
}

func TestOAuthBearerClient(t *testing.T) {
	a := &Account{Host: "outlook.office365.com", Username: "u@contoso.test", Auth: AuthOAuthBearer, Token: "eyJ0"}
	c, err := a.saslClient(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mech, ir, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	if mech != sasl.OAuthBearer || string(ir) != "n,a=u@contoso.test,\x01host=outlook.office365.com\x01port=993\x01auth=Bearer eyJ0\x01\x01" {
		t.Errorf("Start = %q %q", mech, ir)
	}
}

func TestTokenSources(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	t.Run("file re-read at every connect", func(t *testing.T) {
		path := filepath.Join(dir, "token")
		a := &Account{Auth: AuthXOAuth2, TokenFile: path, Token: "ignored"}
		for _, tok := range []string{"first", "second"} {
			if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := a.oauthToken(ctx)
			if err != nil || got != tok {
				t.Errorf("token = %q, %v; want %q", got, err, tok)
			}
		}
		if err := os.WriteFile(path, []byte("  \n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := a.oauthToken(ctx); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Errorf("empty file: %v", err)
		}
		a.TokenFile = filepath.Join(dir, "missing")
		if _, err := a.oauthToken(ctx); err == nil || !strings.Contains(err.Error(), "tokenFile") {
			t.Errorf("missing file: %v", err)
		}
	})

	t.Run("command run at every connect", func(t *testing.T) {
		counter := filepath.Join(dir, "n")
		a := &Account{Auth: AuthXOAuth2, TokenCommand: "echo x >> " + counter + "; printf 'tok-%s\\n' $(wc -l < " + counter + ")"}
		for _, want := range []string{"tok-1", "tok-2"} {
			got, err := a.oauthToken(ctx)
			if err != nil || got != want {
				t.Errorf("token = %q, %v; want %q", got, err, want)
			}
		}
		a.TokenCommand = "echo 'refresh token expired' >&2; exit 3"
		if _, err := a.oauthToken(ctx); err == nil || !strings.Contains(err.Error(), "refresh token expired") {
			t.Errorf("failing command: %v, want its stderr", err)
		}
		a.TokenCommand = "true"
		if _, err := a.oauthToken(ctx); err == nil || !strings.Contains(err.Error(), "no token") {
			t.Errorf("silent command: %v", err)
		}
	})

	t.Run("config string", func(t *testing.T) {
		a := &Account{Auth: AuthOAuthBearer, Token: " tok "}
		if got, err := a.oauthToken(ctx); err != nil || got != "tok" {
			t.Errorf("token = %q, %v", got, err)
		}
	})
}
