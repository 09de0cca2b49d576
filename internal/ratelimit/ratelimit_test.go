package ratelimit

import (
	"testing"
	"time"
)

func TestRateLimiterWindow(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	rl := New(2, time.Hour, func() time.Time { return now })
	if !rl.Allow("a@x") || !rl.Allow("A@X") || rl.Allow("a@x") {
		t.Fatal("the limit of 2 per hour is not applied case-insensitively")
	}
	rl.Refund("a@x")
	if !rl.Allow("a@x") {
		t.Error("a refund did not give the slot back")
	}
	now = now.Add(61 * time.Minute)
	if !rl.Allow("a@x") {
		t.Error("the window did not slide")
	}
	if off := New(-1, time.Hour, time.Now); !off.Allow("a@x") || !off.Allow("a@x") || !off.Allow("a@x") {
		t.Error("a negative limit limits")
	}
}
