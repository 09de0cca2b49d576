package store

import "errors"

// Sentinel errors callers branch on. The api package maps them to HTTP codes.
var (
	// ErrNotFound: no such ticket, or not one the caller may see.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the ticket changed since the caller read it (__v mismatch),
	// or a concurrent writer kept winning.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: a value the schema does not allow.
	ErrInvalid = errors.New("invalid")
	// ErrUnavailable: the database could not be reached, or refuses to
	// write for now (disk full, read-only, over quota); retry later.
	ErrUnavailable = errors.New("store unavailable")
)

// Lease errors: callers branch on them to skip work another daemon does.
var (
	// ErrLeaseHeld: another owner holds the lease and it has not expired.
	ErrLeaseHeld = errors.New("lease held by another owner")
	// ErrLeaseLost: the lease expired and another owner (or a newer
	// acquisition) took it; work under the old token must stop.
	ErrLeaseLost = errors.New("lease lost")
	// ErrClaimLost: a delivery's claim ran out and it was claimed again;
	// the old claimant must leave it to the new one.
	ErrClaimLost = errors.New("delivery claim lost")
)
