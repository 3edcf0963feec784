package directory

import (
	"context"
	"fmt"

	"github.com/clowdr/realtime/plugins/sdk"
)

// queryMessageModerators is the original's FlagInserted_GetModerators
// (http-handlers/chat.ts at 2e35da37, §8.3) with limit 1 (sId is unique)
// and the permission as a variable (sent as permConferenceModerateAttendees,
// the name the permission checks use): the message's conference slug and
// the user ids of the conference's registrants in an enabled group whose
// role grants that permission (enabled and the role apply to the same
// group: both sit in one group filter). userId is null for a registrant who
// has not completed registration yet.
const queryMessageModerators = `query FlagInserted_GetModerators($messageSId: uuid!, $permission: permissions_Permission_enum!) {
  chat_Message(where: { sId: { _eq: $messageSId } }, limit: 1) {
    chat {
      conference {
        slug
        registrants(
          where: {
            groupRegistrants: {
              group: {
                enabled: { _eq: true }
                groupRoles: { role: { rolePermissions: { permissionName: { _eq: $permission } } } }
              }
            }
          }
        ) {
          userId
        }
      }
    }
  }
}`

// opMessageModerators is the operation name of queryMessageModerators.
const opMessageModerators = "FlagInserted_GetModerators"

// MessageModerators answers who moderates the conference of a chat message
// (§8.3), with one uncached query: flags are rare and the moderators should
// be current. A message id that is not a uuid is not found without a
// request; a Hasura error is returned.
func (h *Hasura) MessageModerators(ctx context.Context, messageSID string) (sdk.ConferenceModerators, bool, error) {
	if !validUUID(messageSID) {
		return sdk.ConferenceModerators{}, false, nil
	}
	var data struct {
		Messages []struct {
			Chat *struct {
				Conference *struct {
					Slug        string `json:"slug"`
					Registrants []struct {
						UserID *string `json:"userId"`
					} `json:"registrants"`
				} `json:"conference"`
			} `json:"chat"`
		} `json:"chat_Message"`
	}
	if err := h.query(ctx, opMessageModerators, queryMessageModerators, map[string]any{"messageSId": messageSID, "permission": permConferenceModerateAttendees}, &data); err != nil {
		return sdk.ConferenceModerators{}, false, err
	}
	if len(data.Messages) == 0 {
		return sdk.ConferenceModerators{}, false, nil
	}
	m := data.Messages[0]
	if m.Chat == nil || m.Chat.Conference == nil || m.Chat.Conference.Slug == "" {
		// chat and conference are non-null relations in the schema.
		return sdk.ConferenceModerators{}, false, fmt.Errorf("directory: %s: message %s has no chat conference", opMessageModerators, messageSID)
	}
	out := sdk.ConferenceModerators{ConferenceSlug: m.Chat.Conference.Slug}
	seen := map[string]bool{}
	for _, r := range m.Chat.Conference.Registrants {
		if r.UserID == nil || *r.UserID == "" || seen[*r.UserID] {
			continue
		}
		seen[*r.UserID] = true
		out.UserIDs = append(out.UserIDs, *r.UserID)
	}
	return out, true, nil
}

// MessageModerators of the static directory, which knows no messages: never
// found, so the chat plugin notifies its configured moderators.
func (d *Static) MessageModerators(context.Context, string) (sdk.ConferenceModerators, bool, error) {
	return sdk.ConferenceModerators{}, false, nil
}
