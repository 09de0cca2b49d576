package email

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

// The authentication methods an Account may use.
const (
	AuthLogin       = "login"
	AuthXOAuth2     = "xoauth2"
	AuthOAuthBearer = "oauthbearer"
)

// xoauth2Mech is the SASL mechanism Gmail and Microsoft 365 document.
const xoauth2Mech = "XOAUTH2"

// xoauth2Client is the XOAUTH2 SASL mechanism: one initial response
// "user=U^Aauth=Bearer T^A^A". When the token is refused the server sends a
// JSON error as a challenge, which must be answered with an empty response;
// the command then fails with the server's NO, and the JSON is kept for the
// error message.
type xoauth2Client struct {
	username, token string
	serverErr       string
}

var _ sasl.Client = (*xoauth2Client)(nil)

func (c *xoauth2Client) Start() (string, []byte, error) {
	return xoauth2Mech, []byte("user=" + c.username + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	c.serverErr = strings.TrimSpace(string(challenge))
	return []byte{}, nil
}

// tokenTimeout bounds a TokenCommand run.
const tokenTimeout = 30 * time.Second

// oauthToken returns the account's OAuth access token, fetched anew at every
// connect: a TokenCommand is run (stdout, trimmed), a TokenFile re-read, or
// the configured Token used as is.
func (a *Account) oauthToken(ctx context.Context) (string, error) {
	var tok string
	switch {
	case a.TokenCommand != "":
		ctx, cancel := context.WithTimeout(ctx, tokenTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", a.TokenCommand)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			msg := strings.TrimSpace(stderr.String())
			if len(msg) > 200 {
				msg = msg[:200] + "..."
			}
			if msg != "" {
				return "", fmt.Errorf("run tokenCommand: %w (stderr: %s)", err, msg)
			}
			return "", fmt.Errorf("run tokenCommand: %w", err)
		}
		tok = strings.TrimSpace(string(out))
		if tok == "" {
			return "", errors.New("run tokenCommand: it printed no token on stdout")
		}
	case a.TokenFile != "":
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return "", fmt.Errorf("read tokenFile: %w", err)
		}
		tok = strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("read tokenFile %s: the file is empty", a.TokenFile)
		}
	default:
		tok = strings.TrimSpace(a.Token)
		if tok == "" {
			return "", errors.New("no OAuth token configured (token, tokenFile or tokenCommand)")
		}
	}
	return tok, nil
}

// saslClient returns the SASL client for an OAuth account, with a fresh
// token.
func (a *Account) saslClient(ctx context.Context) (sasl.Client, error) {
	tok, err := a.oauthToken(ctx)
	if err != nil {
		return nil, err
	}
	switch a.Auth {
	case AuthXOAuth2:
		return &xoauth2Client{username: a.Username, token: tok}, nil
	case AuthOAuthBearer:
		return sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{
			Username: a.Username, Token: tok, Host: a.Host, Port: a.port(),
		}), nil
	}
	return nil, fmt.Errorf("auth %q is not an OAuth method", a.Auth)
}
