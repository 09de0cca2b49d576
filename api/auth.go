package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/store"
)

// Role is what a token lets its bearer do.
type Role string

// The roles.
const (
	RoleCustomer Role = "customer"
	RoleAdmin    Role = "admin"
)

// Claims are a ticketd token's claims: sub is the customer's or agent's id
// (an ObjectID in hex), role says which, team scopes a customer.
type Claims struct {
	Role Role   `json:"role"`
	Team string `json:"team,omitempty"`
	jwt.RegisteredClaims
}

// Principal is the authenticated caller.
type Principal struct {
	ID   bson.ObjectID
	Role Role
	Team string // for customers: the team whose tickets they see
}

func (p Principal) actor() store.Actor {
	if p.Role == RoleAdmin {
		return store.Actor{ID: p.ID, Type: store.CreatorAdmin, Via: store.SourceAPI}
	}
	return store.Actor{ID: p.ID, Type: store.CreatorCustomer, Via: store.SourceAPI}
}

func (p Principal) scope() store.Scope {
	if p.Role == RoleAdmin {
		return store.AllTickets
	}
	return store.TeamScope(p.Team)
}

// NewToken mints an HS256 token; `ticketd token` uses it with the daemon's
// own secret.
func NewToken(secret []byte, sub bson.ObjectID, role Role, team string, ttl time.Duration, now time.Time) (string, error) {
	if role != RoleCustomer && role != RoleAdmin {
		return "", fmt.Errorf("mint token: role %q is not customer or admin", role)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("mint token: ttl must be positive, got %s", ttl)
	}
	c := Claims{Role: role, Team: team, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub.Hex(),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// authenticator checks bearer tokens.
type authenticator struct {
	secret []byte
	parser *jwt.Parser
}

func newAuthenticator(secret []byte, now func() time.Time) *authenticator {
	return &authenticator{
		secret: secret,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), // no "none", no RS/ES confusion
			jwt.WithExpirationRequired(),
			jwt.WithTimeFunc(now),
			jwt.WithLeeway(30*time.Second),
		),
	}
}

func (a *authenticator) principal(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	scheme, raw, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		return Principal{}, errUnauthorized
	}
	var c Claims
	_, err := a.parser.ParseWithClaims(strings.TrimSpace(raw), &c, func(*jwt.Token) (any, error) { return a.secret, nil })
	if err != nil {
		return Principal{}, errUnauthorized
	}
	id, err := bson.ObjectIDFromHex(c.Subject)
	if err != nil || (c.Role != RoleCustomer && c.Role != RoleAdmin) {
		return Principal{}, errUnauthorized
	}
	p := Principal{ID: id, Role: c.Role, Team: c.Team}
	if p.Role == RoleCustomer && p.Team == "" {
		p.Team = store.PersonalTeam(id)
	}
	return p, nil
}

type principalKey struct{}

func principalFrom(ctx context.Context) (Principal, error) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	if !ok {
		return Principal{}, errors.New("no principal in request context")
	}
	return p, nil
}
