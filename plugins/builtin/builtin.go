// Package builtin registers the plugins that ship inside the realtime binary.
// Import it for its side effect; each plugin's init() calls sdk.Register.
package builtin

import (
	_ "github.com/clowdr/realtime/plugins/admin"     // POST /summary, POST /flush, /admin
	_ "github.com/clowdr/realtime/plugins/analytics" // analytics.view.count, view-count writeback
	_ "github.com/clowdr/realtime/plugins/chat"      // chat messages, reactions, unread counts
	_ "github.com/clowdr/realtime/plugins/echo"      // the example plugin
	_ "github.com/clowdr/realtime/plugins/handraise" // event.handRaise.*, POST /event/ended
	_ "github.com/clowdr/realtime/plugins/presence"  // who is on which page
	_ "github.com/clowdr/realtime/plugins/push"      // Web Push: /vapid/publicKey, /pushNotificationSubscription/changed
)
