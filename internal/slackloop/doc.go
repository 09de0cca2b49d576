// Package slackloop holds no code: its tests run Slack's two halves
// together, the inbound bridge (ingest/slackin) and the Slack sink
// (notify/slackout) under the shared delivery runner and the outbox
// relay, against the fake Slack, as cmd/ticketd wires them. ingest and
// notify may not import each other, so the loop is tested here.
package slackloop
