"""
The auto attendant: a business's front door.

A caller reaches a menu (directly, or through a schedule that picks the
menu by the time of day and the calendar), hears its greeting and presses
a key: an extension, another menu, a mailbox, the operator, dial-by-name,
an application.  Menus and schedules come from the ``features: attendant:``
section and can be changed at run time through ``/api/v1/attendant/``.

- :mod:`.validate`: small checks shared by the parsers.
- :mod:`.menus`: actions and menus, parsed and dumped.
- :mod:`.schedule`: opening hours, holidays, which menu plays now.
- :mod:`.options`: the feature section and the reference checks.
- :mod:`.directory`: dial-by-name.
- :mod:`.catalogue`: the menu set in the store, config and API merged.
- :mod:`.app`: the ``attendant`` dialplan application.
- :mod:`.api`: the REST routes.
"""
