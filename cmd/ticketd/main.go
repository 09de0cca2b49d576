// Command ticketd turns support conversations (email, Slack, REST) into
// tickets.
//
//	ticketd serve [-config FILE]         run the daemon
//	ticketd token -role R -sub ID ...    mint an API token
//	ticketd check-config FILE            validate a configuration file
//	ticketd deliver [-config FILE]       hand a message on stdin to the daemon (LMTP)
//	ticketd slack-manifest [-url URL]    print the Slack app manifest
//	ticketd backup -out FILE             copy the embedded store while it runs
//	ticketd export / import              move the store's documents as JSON lines
//	ticketd webhook-verify ... < BODY    check a received webhook's signature
//	ticketd version                      print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/api"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		// A second signal while shutting down forces the exit.
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
		<-again
		fmt.Fprintln(os.Stderr, "ticketd: second signal, exiting without finishing in-flight work")
		os.Exit(1)
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	var exit *exitError
	switch {
	case errors.As(err, &exit):
		fmt.Fprintln(os.Stderr, "ticketd:", err)
		os.Exit(exit.code)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "ticketd:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const usage = `ticketd turns support conversations into tickets.

Usage:
  ticketd serve [-config FILE]          run the daemon (embedded store when no store.uri)
  ticketd token -role customer|admin [-sub ID] [-team T] [-ttl 24h] [-config FILE]
                                        mint an API token signed with the daemon's secret
  ticketd check-config FILE             report every invalid value in FILE
  ticketd deliver [-config FILE] [-recipient ADDR] < MESSAGE
                                        hand one message to the running daemon over
                                        LMTP (exit 0 stored, 75 try later, 65/70 refused)
  ticketd slack-manifest [-config FILE] [-mode socket|events] [-url https://HOST]
                                        print the Slack app manifest for the mode
  ticketd backup -out FILE [-config FILE]
                                        copy the embedded store's database, also
                                        while the daemon runs
  ticketd export [-config FILE] [-out FILE]
                                        write every document of the store as JSON lines
  ticketd import [-config FILE] [-force] [-check] FILE|-
                                        write an export into the store (empty unless -force)
  ticketd webhook-verify [-secret-file FILE] (-headers FILE | -id ID -timestamp TS -signature SIG) < BODY
                                        check a received webhook's signature (exit 0 valid, 1 not)
  ticketd version                       print the version

Run "ticketd COMMAND -help" for a command's flags.
`

// run is main without the process: tests call it with their own context,
// arguments, output and environment.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], stderr, getenv, nil)
	case "token":
		return cmdToken(args[1:], stdout, stderr, getenv)
	case "check-config":
		return cmdCheckConfig(args[1:], stdout, stderr, getenv)
	case "deliver":
		return cmdDeliver(ctx, args[1:], os.Stdin, stderr, getenv)
	case "slack-manifest":
		return cmdSlackManifest(args[1:], stdout, stderr, getenv)
	case "backup":
		return cmdBackup(ctx, args[1:], stderr, getenv)
	case "export":
		return cmdExport(ctx, args[1:], stdout, stderr, getenv)
	case "import":
		return cmdImport(ctx, args[1:], os.Stdin, stderr, getenv)
	case "webhook-verify":
		return cmdWebhookVerify(args[1:], os.Stdin, stdout, stderr, getenv)
	case "version":
		fmt.Fprintln(stdout, "ticketd", version())
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "ticketd: unknown command %q\n\n%s", args[0], usage)
		return errUsage
	}
}

func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ticketd %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

// parseFlagsAndOneArg parses flags followed by exactly one argument.
func parseFlagsAndOneArg(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	return nil
}

func cmdToken(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("token", "token -role customer|admin [-sub ID] [-team T] [-ttl 24h] [-config FILE]", stderr)
	role := fs.String("role", "", "customer or admin (required)")
	sub := fs.String("sub", "", "the customer's or agent's id, 24 hex characters (default: a new id, printed on stderr)")
	team := fs.String("team", "", "the customer's team (customers only; default: a personal team)")
	ttl := fs.Duration("ttl", 0, "lifetime (default: auth.tokenTTL, 24h)")
	cfgPath := fs.String("config", "", "configuration file (default: none, built-in defaults)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	id := bson.NewObjectID()
	if *sub != "" {
		if id, err = bson.ObjectIDFromHex(*sub); err != nil {
			return fmt.Errorf("-sub must be 24 hexadecimal characters, got %q", *sub)
		}
	} else {
		fmt.Fprintln(stderr, "sub:", id.Hex())
	}
	if *role == string(api.RoleAdmin) && *team != "" {
		return errors.New("-team is for customers; admins see every team")
	}
	if err := api.CheckTeam(*team); err != nil {
		return fmt.Errorf("-team: %w", err)
	}
	if *ttl == 0 {
		*ttl = cfg.Auth.TokenTTL
	}
	secret, err := jwtSecret(cfg)
	if err != nil {
		return err
	}
	tok, err := api.NewToken(secret, id, api.Role(*role), *team, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("check-config", "check-config FILE", stderr)
	if err := parseFlagsAndOneArg(fs, args); err != nil {
		return err
	}
	if _, err := loadConfig(fs.Arg(0), getenv); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok\n", fs.Arg(0))
	return nil
}
