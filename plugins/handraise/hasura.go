package handraise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/clowdr/realtime/plugins/internal/kit"
)

// maxGraphQLResponse bounds a Hasura response body.
const maxGraphQLResponse = 1 << 20

// roleParticipant is the role accept gives (Schedule_EventProgramPersonRole_Enum.Participant).
const roleParticipant = "PARTICIPANT"

// GraphQL documents of accept (the original's GetExistingProgramPerson and
// InsertEventParticipant, plus a lookup of the event's conference, which the
// original read from its event cache).
const (
	gqlEventConference = `query HandRaiseEventConference($eventId: uuid!) {
  schedule_Event_by_pk(id: $eventId) { id conferenceId }
}`
	gqlExistingPerson = `query GetExistingProgramPerson($conferenceId: uuid!, $userId: String!) {
  collection_ProgramPerson(where: {conferenceId: {_eq: $conferenceId}, registrant: {userId: {_eq: $userId}}}) { id }
  registrant_Registrant(where: {conferenceId: {_eq: $conferenceId}, userId: {_eq: $userId}}) { id displayName }
}`
	gqlInsertParticipant = `mutation InsertEventParticipant($eventPerson: schedule_EventProgramPerson_insert_input!) {
  insert_schedule_EventProgramPerson_one(
    object: $eventPerson
    on_conflict: {constraint: EventProgramPerson_eventId_personId_roleName_key, update_columns: [roleName]}
  ) {
    id
    person { id name affiliation registrantId }
  }
}`
)

// errNoPerson: the target has neither a program person nor a registrant in
// the event's conference (or the event does not exist).
var errNoPerson = errors.New("no program person or registrant")

// addParticipant upserts the target as a PARTICIPANT of the event, as the
// original's accept did, and returns the row for the broadcast.
func (p *Plugin) addParticipant(ctx context.Context, eventID, userID string) (*EventPerson, error) {
	var ev struct {
		Event *struct {
			ConferenceID string `json:"conferenceId"`
		} `json:"schedule_Event_by_pk"`
	}
	if err := p.graphql(ctx, gqlEventConference, map[string]any{"eventId": eventID}, &ev); err != nil {
		return nil, fmt.Errorf("look up event: %w", err)
	}
	if ev.Event == nil || ev.Event.ConferenceID == "" {
		return nil, fmt.Errorf("%w: event not found", errNoPerson)
	}
	conf := ev.Event.ConferenceID
	var existing struct {
		People []struct {
			ID string `json:"id"`
		} `json:"collection_ProgramPerson"`
		Registrants []struct {
			ID          string `json:"id"`
			DisplayName string `json:"displayName"`
		} `json:"registrant_Registrant"`
	}
	if err := p.graphql(ctx, gqlExistingPerson, map[string]any{"conferenceId": conf, "userId": userID}, &existing); err != nil {
		return nil, fmt.Errorf("look up person: %w", err)
	}
	row := map[string]any{"eventId": eventID, "roleName": roleParticipant}
	switch {
	case len(existing.People) > 0:
		row["personId"] = existing.People[0].ID
	case len(existing.Registrants) > 0:
		r := existing.Registrants[0]
		row["person"] = map[string]any{"data": map[string]any{"conferenceId": conf, "name": r.DisplayName, "registrantId": r.ID}}
	default:
		return nil, errNoPerson
	}
	var ins struct {
		Row *struct {
			ID     string          `json:"id"`
			Person json.RawMessage `json:"person"`
		} `json:"insert_schedule_EventProgramPerson_one"`
	}
	if err := p.graphql(ctx, gqlInsertParticipant, map[string]any{"eventPerson": row}, &ins); err != nil {
		return nil, fmt.Errorf("insert participant: %w", err)
	}
	if ins.Row == nil || ins.Row.ID == "" {
		return nil, errors.New("insert participant: no row returned")
	}
	person := ins.Row.Person
	if len(person) == 0 {
		person = json.RawMessage("null")
	}
	return &EventPerson{ID: ins.Row.ID, EventID: eventID, RoleName: roleParticipant, Person: person}, nil
}

// graphql posts one request to graphql_url and decodes its data into out.
func (p *Plugin) graphql(ctx context.Context, query string, vars map[string]any, out any) error {
	h := kit.Hasura{Client: p.httpClient, URL: p.cfg.GraphQLURL, AdminSecret: p.cfg.AdminSecret, MaxResponse: maxGraphQLResponse}
	return h.DoInto(ctx, query, vars, out)
}
